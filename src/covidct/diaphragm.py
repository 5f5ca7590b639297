"""Diaphragm domes: abdominal organs that an axial slice shows as an island inside the lung.

Near the lung bases an axial slice cuts the dome of the right hemidiaphragm (the liver
beneath it) and of the left (spleen, stomach fundus) above the costophrenic recesses, so
the dome appears as a round soft-tissue island with aerated lung all around it. Filling
the lung mask's holes slice by slice (which keeps vessels and consolidation inside the
lung) would call that island lung: on the real validation series it put the liver dome
into the lung mask of every chest CT at hand, and the lesion measure then read it as
consolidation (normal001, LIDC-IDRI-0001/0003, benchmarks/results/lung_domes.txt).

What separates a dome from a lesion or a vessel is where its hole leads in 3D: followed
down (inferiorly), a dome's island opens on its lowest slice into soft tissue outside the
lung (the organ under the diaphragm), over a large footprint; a consolidation surrounded by
lung ends on aerated lung, and a vessel that leaves the lung through the mediastinum does so
over a vessel's cross-section. Canonical arrays run inferior -> superior along axis 0
(covidct.io.orient), so "below" is index - 1.
"""

from __future__ import annotations

import cc3d
import numpy as np
from scipy import ndimage

SOFT_TISSUE_MIN_HU = -300.0  # what lies under a dome's island: liver, spleen, stomach wall
DOME_MIN_AREA_MM2 = 300.0  # the island on its lowest slice (a vein leaving the lung: < 2 cm^2)
DOME_OPEN_SHARE = 0.5  # share of that footprint resting on soft tissue outside the lung


def dome_holes(holes: np.ndarray, lung: np.ndarray, hu: np.ndarray,
               spacing_mm: tuple[float, float, float],
               min_area_mm2: float = DOME_MIN_AREA_MM2,
               open_share: float = DOME_OPEN_SHARE) -> np.ndarray:
    """The voxels of `holes` that belong to a diaphragm dome (see the module docstring).

    holes: (z, y, x) bool, the per-slice holes of the lung mask (not lung themselves);
    lung: (z, y, x) bool lung mask without those holes; hu: (z, y, x) HU, same grid;
    spacing_mm: (z, y, x). Axis 0 must run inferior -> superior (canonical order).
    Returns a (z, y, x) bool mask, a subset of `holes`: every 3D hole component whose
    lowest slice covers at least `min_area_mm2` and rests, on at least `open_share` of
    that footprint, on soft tissue (>= SOFT_TISSUE_MIN_HU) that is neither lung nor hole
    on the slice below.
    """
    out = np.zeros(holes.shape, dtype=bool)
    if not holes.any():
        return out
    pixel_mm2 = float(spacing_mm[1]) * float(spacing_mm[2])
    components = cc3d.connected_components(holes, connectivity=6)
    for index, obj in enumerate(ndimage.find_objects(components), start=1):
        if obj is None or obj[0].start == 0:  # nothing below the lowest slice to look at
            continue
        z0 = obj[0].start
        foot = components[z0][obj[1:]] == index
        if foot.sum() * pixel_mm2 < min_area_mm2:
            continue
        below = (z0 - 1, *obj[1:])
        soft_open = (hu[below] >= SOFT_TISSUE_MIN_HU) & ~lung[below] & ~holes[below]
        if np.count_nonzero(soft_open & foot) >= open_share * np.count_nonzero(foot):
            out[obj] |= components[obj] == index
    return out
