"""The HU-threshold lung segmentation baseline the learned lung model is compared with.

Classic recipe: voxels below -320 HU; air connected to the slice border (outside the
body) removed; the largest 3D component, plus the second when it is a lung-sized one;
holes filled slice by slice (vessels); split into right (1) / left (2) at the midline.
It misses dense consolidation and effusion at the lung's edge, which is why a learned
model is needed: evaluation reports it separately on infected and clean cases.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from covidct.train.masks import split_lung_sides
from covidct.volume import Volume

logger = logging.getLogger(__name__)

AIR_THRESHOLD_HU = -320.0
MIN_COMPONENT_CM3 = 5.0  # smaller air pockets (bowel gas, noise) are ignored
SECOND_LUNG_SHARE = 0.2  # the second component is a lung when >= 20 % of the first


def threshold_lungs(volume: Volume, *, air_threshold_hu: float = AIR_THRESHOLD_HU
                    ) -> np.ndarray:
    """uint8 (z, y, x) lung mask, 1 right, 2 left, by HU thresholding."""
    air = np.asarray(volume.hu) < air_threshold_hu
    inside = np.zeros_like(air)
    for k in range(air.shape[0]):
        inside[k] = _air_inside_body(air[k])
    components, count = ndimage.label(inside)
    if count == 0:
        logger.info("Baseline: no air inside the body.")
        return np.zeros(air.shape, dtype=np.uint8)
    sizes = ndimage.sum_labels(inside, components, index=np.arange(1, count + 1))
    min_voxels = MIN_COMPONENT_CM3 * 1000.0 / volume.voxel_volume_mm3
    order = np.argsort(sizes)[::-1]
    keep = [order[0] + 1] if sizes[order[0]] >= min_voxels else []
    if (count > 1 and keep and sizes[order[1]] >= min_voxels
            and sizes[order[1]] >= SECOND_LUNG_SHARE * sizes[order[0]]):
        keep.append(order[1] + 1)
    lung = np.isin(components, keep)
    for k in range(lung.shape[0]):
        if lung[k].any():
            lung[k] = ndimage.binary_fill_holes(lung[k])
    return split_lung_sides(lung)


def _air_inside_body(air: np.ndarray) -> np.ndarray:
    """Air of one slice minus the air connected to its border (outside the patient)."""
    labels, _ = ndimage.label(air)
    border = np.unique(np.r_[labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    return air & ~np.isin(labels, border[border > 0])
