"""How much of the lungs a series shows: volumes, craniocaudal extent, one lung or two.

The decision (covidct.decision) turns too little coverage into 'indeterminate'; a missing
lung is analysed with a warning (a pneumonectomy, a collapsed lung or a large effusion are
real), because the other lung can still be judged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from covidct.decision import MIN_LUNG_EXTENT_MM, MIN_LUNG_VOLUME_CM3

RIGHT, LEFT = 1, 2
ONE_LUNG_SHARE = 0.10  # a side under 10 % of the other's volume counts as absent


@dataclass(frozen=True)
class ChestCoverage:
    """Lung present in a series (volumes in cm3, extent in mm along the body axis)."""

    lung_volume_cm3: float
    right_cm3: float
    left_cm3: float
    lung_extent_mm: float   # from the lowest to the highest lung slice, slice extents included
    warnings: tuple[str, ...]
    fov_cut_share: float = 0.0  # share of lung slices whose lung touches the image edge


def chest_coverage(lung_mask: np.ndarray, has_lung: np.ndarray, z_mm: np.ndarray,
                   voxel_volume_mm3: float) -> ChestCoverage:
    """The coverage facts of a (z, y, x) lung label map (1 right, 2 left).

    has_lung: (z,) the slices the classifier counts as lung slices; z_mm: (z,) slice
    positions along the body axis (Volume.slice_positions_mm()).
    """
    counts = np.stack([(lung_mask == side).sum(axis=(1, 2)) for side in (RIGHT, LEFT)])
    cm3 = voxel_volume_mm3 / 1000.0
    right, left = (float(c.sum()) * cm3 for c in counts)
    zs = np.flatnonzero(has_lung)
    z_mm = np.asarray(z_mm, dtype=np.float64)
    if zs.size:
        step = float(np.median(np.abs(np.diff(z_mm)))) if z_mm.size > 1 else 0.0
        extent = float(abs(z_mm[zs].max() - z_mm[zs].min())) + step
    else:
        extent = 0.0
    edge = np.zeros(lung_mask.shape[0], dtype=bool)
    for border in (lung_mask[:, 0, :], lung_mask[:, -1, :], lung_mask[:, :, 0],
                   lung_mask[:, :, -1]):
        edge |= (border > 0).any(axis=1)
    fov_cut = float(edge[zs].mean()) if zs.size else 0.0
    warnings = []
    big, small = max(right, left), min(right, left)
    # only where the series can be decided: a sliver of lung base is often one-sided
    decidable = extent >= MIN_LUNG_EXTENT_MM and right + left >= MIN_LUNG_VOLUME_CM3
    if decidable and small < ONE_LUNG_SHARE * big:
        missing = "left" if left < right else "right"
        warnings.append(
            f"only one lung found: the {missing} lung measures {small:.0f} cm3 against "
            f"{big:.0f} cm3 (a pneumonectomy, a collapsed lung or a large effusion?); the "
            "present lung is analysed and % figures refer to it.")
    return ChestCoverage(lung_volume_cm3=right + left, right_cm3=right, left_cm3=left,
                         lung_extent_mm=extent,
                         warnings=tuple(warnings), fov_cut_share=fov_cut)
