"""Diaphragm domes stay out of the lung mask; consolidation enclosed by lung stays in it."""

from __future__ import annotations

import numpy as np

from covidct.diaphragm import dome_holes
from covidct.lung import fill_holes_per_slice, postprocess_lung_mask

SPACING = (2.0, 1.0, 1.0)  # (z, y, x) mm
LUNG_HU, TISSUE_HU = -850.0, 50.0


def _disk(shape: tuple[int, int], centre: tuple[int, int], radius: float) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def lung_base_phantom() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(labels, hu, dome, lesion) of a right lung (label 1) over the liver, z inferior first.

    z 0-1: liver only; z 2-3: the liver ringed by the costophrenic recess (a lung frame);
    z 4-7: the liver's dome, an island (radius 16 -> 10 mm) in aerated lung; z 8-19:
    aerated lung holding a consolidation (radius 12 mm, z 12-14) with lung all around it.
    """
    shape = (20, 60, 80)
    hu = np.full(shape, TISSUE_HU, dtype=np.float32)
    lung = np.zeros(shape, dtype=bool)
    region = np.zeros(shape[1:], dtype=bool)
    region[5:55, 5:75] = True
    inner = np.zeros(shape[1:], dtype=bool)
    inner[10:50, 10:70] = True
    dome = np.zeros(shape, dtype=bool)
    lesion = np.zeros(shape, dtype=bool)
    for z in range(2, 4):
        lung[z] = region & ~inner
    for z, radius in zip(range(4, 8), (16, 14, 12, 10), strict=True):
        dome[z] = _disk(shape[1:], (30, 40), radius)
        lung[z] = region & ~dome[z]
    for z in range(8, 20):
        lung[z] = region
    for z in range(12, 15):
        lesion[z] = _disk(shape[1:], (30, 40), 12)
        lung[z] &= ~lesion[z]
    hu[lung] = LUNG_HU
    labels = lung.astype(np.uint8)  # everything right lung (label 1)
    return labels, hu, dome, lesion


def test_dome_holes_finds_the_dome_and_the_liver_inside_the_recess_only() -> None:
    labels, hu, dome, lesion = lung_base_phantom()
    lung = labels > 0
    holes = fill_holes_per_slice(lung) & ~lung
    assert holes[dome].all() and holes[lesion].all()  # both are 2D holes
    found = dome_holes(holes, lung, hu, SPACING)
    # regions are found by an opening with a 5 mm square: a disk's outermost pixels stay
    assert found[dome].mean() > 0.9
    assert found[2:4].sum() > 0.9 * holes[2:4].sum()  # the liver ringed by the recess
    assert not found[lesion].any()


def test_postprocess_with_hu_keeps_consolidation_and_drops_the_dome() -> None:
    labels, hu, dome, lesion = lung_base_phantom()
    with_hu = postprocess_lung_mask(labels, hu, SPACING)
    assert (with_hu[dome] == 0).mean() > 0.9
    assert (with_hu[lesion] == 1).all()
    # without HU (the old behaviour) the dome is filled in as lung
    assert (postprocess_lung_mask(labels)[dome] == 1).all()


def test_small_island_resting_on_tissue_is_kept() -> None:
    """A vessel-sized hole that leaves the lung downwards (< 3 cm^2) is not a dome."""
    labels, hu, dome, _ = lung_base_phantom()
    labels[4:8][dome[4:8]] = 1  # no dome, and no recess: the liver below z 4
    hu[4:8][dome[4:8]] = LUNG_HU
    labels[2:4] = 0
    hu[2:4] = TISSUE_HU
    vessel = np.zeros(labels.shape, dtype=bool)
    vessel[4:10] = _disk(labels.shape[1:], (30, 40), 5)  # 79 mm^2, open below at z 3
    labels[vessel] = 0
    hu[vessel] = TISSUE_HU
    out = postprocess_lung_mask(labels, hu, SPACING)
    assert (out[vessel] == 1).all()


def test_dome_holes_empty_and_hole_on_the_first_slice() -> None:
    shape = (3, 40, 40)
    assert not dome_holes(np.zeros(shape, bool), np.zeros(shape, bool),
                          np.zeros(shape, np.float32), SPACING).any()
    holes = np.zeros(shape, bool)
    holes[0:2, 5:35, 5:35] = True  # nothing below the volume's first slice to look at
    assert not dome_holes(holes, np.zeros(shape, bool), np.zeros(shape, np.float32),
                          SPACING).any()


def chest_with_painted_dome() -> tuple[np.ndarray, ...]:
    """(lung, hu, body, dome, consolidation) on a 1 mm in-plane grid, z inferior first.

    Body 150 x 150 mm; liver (50 HU) fills z 0-3; lung z 4-19. The dome (radius 16 -> 10
    mm, body centre, 75 mm under the skin) is in the lung mask (as the network paints it)
    and opens onto the heart on its medial side; a consolidation (z 4-8) lies against the
    posterior chest wall (20 mm under the skin), resting on the liver too.
    """
    shape = (20, 160, 160)
    body = np.zeros(shape, dtype=bool)
    body[:, 5:155, 5:155] = True
    hu = np.where(body, TISSUE_HU, -1000.0).astype(np.float32)
    lung = np.zeros(shape, dtype=bool)
    lung[4:, 25:136, 20:141] = True
    heart = np.zeros(shape, dtype=bool)
    heart[4:, 70:91, 92:141] = True
    lung &= ~heart
    hu[lung] = LUNG_HU
    dome = np.zeros(shape, dtype=bool)
    for z, radius in zip(range(4, 8), (16, 14, 12, 10), strict=True):
        dome[z] = _disk(shape[1:], (80, 80), radius) | (_disk(shape[1:], (80, 80), radius)
                                                        & heart[z])
        dome[z] &= ~heart[z]
    consolidation = np.zeros(shape, dtype=bool)
    consolidation[4:9, 115:136, 30:61] = True
    hu[dome | consolidation] = 40.0
    return lung, hu, body, dome, consolidation


def test_dome_components_takes_the_deep_dome_and_leaves_wall_consolidation() -> None:
    from covidct.diaphragm import dome_components

    lung, hu, body, dome, consolidation = chest_with_painted_dome()
    found = dome_components(lung, hu, body, SPACING)
    assert found[dome].mean() > 0.9
    assert not found[consolidation].any()
    assert not found[lung & ~dome].any()  # aerated lung stays lung


def test_dome_components_depth_threshold_is_what_decides() -> None:
    from covidct.diaphragm import dome_components

    lung, hu, body, dome, consolidation = chest_with_painted_dome()
    # with a threshold beyond the dome's depth, nothing is a dome; with one under the
    # consolidation's, both are: the depth under the skin is what separates them here
    assert not dome_components(lung, hu, body, SPACING, min_depth_mm=90.0).any()
    both = dome_components(lung, hu, body, SPACING, min_depth_mm=10.0)
    assert both[dome].mean() > 0.9 and both[consolidation].mean() > 0.9
