"""Gas in the stomach, bowel or oesophagus that touches the lung air, kept out of the lung.

A gas-filled stomach under the left hemidiaphragm joins the lung's air component through
the partial-volume voxels of a thin diaphragm, and the lung network paints it as lung too
(COVID-CT-MD cap001: 158 cm3 of "left lung" on its lowest slices, 136 cm3 of it gas).
What tells it apart, on the in-plane pooled grid of covidct.anatomy:

- it is a solid body of pure gas (below GAS_HU, -950 HU) that an in-plane opening with a
  `CORE_MM` square keeps, of at least `MIN_CM3`; emphysema bullae are such bodies too;
- a bulla sits in lung: the ring 1-4 voxels around it is mostly lung density (soft tissue
  at most 23 % of it on the emphysematous COPDGene lung), while the ring around gas in an
  organ is mostly its wall and the abdomen (65 % soft tissue, >= -500 HU, on cap001's
  stomach): organ gas has a ring of at least `MIN_RING_SOFT` soft tissue;
- and it lies under the lungs: its top is in the lowest `MAX_TOP_SHARE` of the lung's
  extent along the body axis (cap001's stomach reaches 17 % of it). Pure gas against the
  mediastinum and chest wall higher up (a paraseptal bulla; one synthetic case has a 62 cm3
  strip with 63 % soft tissue around it, reaching 55 % of the extent) stays lung.

These thresholds rest on one real stomach (cap001) and the bullae of one emphysematous
lung (COPDGene), plus the synthetic corpus.

The organ gas is then grown by `RIM_VOXELS` through air (< AIR_HU) to take its
partial-volume rim, which also cuts the thin link to the lung base. Every gas body of
the real series and the synthetic corpus, with these measures and its verdict:
benchmarks/gut_gas.py -> benchmarks/results/gut_gas.txt (only cap001's stomach is organ
gas; no other lung mask changes).
"""

from __future__ import annotations

import cc3d
import numpy as np
from scipy import ndimage

CORE_MM = 2.0
MIN_CM3 = 3.0
MIN_RING_SOFT = 0.5
MAX_TOP_SHARE = 0.25
SOFT_HU = -500.0
RIM_VOXELS = 3


def gut_gas(hu_pooled: np.ndarray, lung_air: np.ndarray, airway: np.ndarray,
            spacing_mm: tuple[float, float, float], *, gas_hu: float,
            air_hu: float) -> np.ndarray:
    """(z, y, x) bool on the pooled grid: the organ gas inside `lung_air` (see the module
    docstring), grown by its rim; hu_pooled in HU, spacing_mm the pooled grid's (dz, dy, dx).
    The airway is never organ gas here (its ring is cartilage and mediastinum too)."""
    out = np.zeros(lung_air.shape, dtype=bool)
    air = (hu_pooled < air_hu) & lung_air & ~airway
    for body in gas_bodies(hu_pooled, lung_air, airway, spacing_mm, gas_hu=gas_hu):
        if body["organ"]:
            box, inside = body["box"], body["mask"]
            out[box] |= ndimage.binary_dilation(inside, iterations=RIM_VOXELS,
                                                mask=air[box] | inside)
    return out


def gas_bodies(hu_pooled: np.ndarray, lung_air: np.ndarray, airway: np.ndarray,
               spacing_mm: tuple[float, float, float], *, gas_hu: float
               ) -> list[dict]:
    """Every solid body of pure gas of at least MIN_CM3 in `lung_air` (airway excluded):
    dicts with volume_cm3, z_first, z_last, ring_soft (share of soft tissue in the ring 1-4
    voxels around it), top_share (its top's height in the lung's extent, 0 at the lowest
    lung slice), organ (ring_soft >= MIN_RING_SOFT and top_share <= MAX_TOP_SHARE), and
    box / mask (its bounding box grown by the ring and rim reach, its voxels there)."""
    from covidct.anatomy import open_in_plane  # here: covidct.anatomy imports this module

    gas = (hu_pooled < gas_hu) & lung_air & ~airway
    if not gas.any():
        return []
    solid = open_in_plane(gas, CORE_MM, spacing_mm[1:])
    labels, count = cc3d.connected_components(solid, connectivity=6, return_N=True)
    if count == 0:
        return []
    stats = cc3d.statistics(labels)
    voxel_cm3 = float(np.prod(spacing_mm)) / 1000.0
    lung_zs = np.flatnonzero((lung_air & ~gas).any(axis=(1, 2)))  # the parenchyma's extent
    bottom, height = int(lung_zs[0]), max(int(lung_zs[-1] - lung_zs[0]), 1)
    margin = 4 + RIM_VOXELS
    bodies = []
    for index in range(1, count + 1):
        volume_cm3 = float(stats["voxel_counts"][index]) * voxel_cm3
        if volume_cm3 < MIN_CM3:
            continue
        bbox = stats["bounding_boxes"][index]
        box = tuple(slice(max(s.start - margin, 0), min(s.stop + margin, n))
                    for s, n in zip(bbox, labels.shape, strict=True))
        inside = labels[box] == index
        ring = ndimage.binary_dilation(inside, iterations=4) & ~ndimage.binary_dilation(inside)
        ring_soft = float((hu_pooled[box][ring] >= SOFT_HU).mean())
        top_share = (int(bbox[0].stop - 1) - bottom) / height
        bodies.append({"volume_cm3": round(volume_cm3, 2), "z_first": int(bbox[0].start),
                       "z_last": int(bbox[0].stop - 1), "ring_soft": round(ring_soft, 3),
                       "top_share": round(top_share, 3),
                       "organ": ring_soft >= MIN_RING_SOFT and top_share <= MAX_TOP_SHARE,
                       "box": box, "mask": inside})
    return bodies
