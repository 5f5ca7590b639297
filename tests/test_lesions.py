"""Known answers for the HU lesion segmentation (covidct.lesions) and the density measures."""

from __future__ import annotations

import numpy as np
import pytest

from covidct import case
from covidct.lesions import (
    CONSOLIDATION,
    GGO,
    LesionParams,
    density_measures,
    segment_lesions,
    working_factors,
)
from covidct.volume import Volume

SPACING = (1.5, 1.5, 1.5)
SHAPE = (48, 96, 112)
RADIUS_MM = 10.0
SPHERE_CM3 = 4.0 / 3.0 * np.pi * RADIUS_MM**3 / 1000.0  # 4.19 cm3


def _grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z, y, x = np.meshgrid(*(np.arange(n) * s for n, s in zip(SHAPE, SPACING, strict=True)),
                          indexing="ij")
    return z, y, x


def phantom(seed: int = 0, *, gradient_hu: float = 0.0, spheres: bool = True):
    """A chest: soft tissue around two box lungs of -870 HU (+ a posterior gradient),
    a GGO sphere (-550 HU) and a consolidation sphere (+20 HU) of radius 10 mm, and vessels:
    cylinders of radius 1.5 mm at +40 HU along z and along x, and one of radius 4 mm (a
    hilar vessel, wider than the opening: the Hessian tube test removes it), that must not
    count."""
    rng = np.random.default_rng(seed)
    z, y, x = _grid()
    hu = np.full(SHAPE, 40.0, dtype=np.float32)
    lung = np.zeros(SHAPE, dtype=np.uint8)
    inner = (z > 4) & (z < 66) & (y > 12) & (y < 130)
    lung[inner & (x > 12) & (x < 78)] = 1
    lung[inner & (x > 90) & (x < 156)] = 2
    depth = (y - 12) / 118.0  # 0 anterior, 1 posterior
    hu[lung > 0] = (-870.0 + gradient_hu * depth)[lung > 0]
    ggo = (z - 36) ** 2 + (y - 50) ** 2 + (x - 40) ** 2 <= RADIUS_MM**2
    cons = (z - 36) ** 2 + (y - 95) ** 2 + (x - 125) ** 2 <= RADIUS_MM**2
    if spheres:
        hu[ggo] = -550.0
        hu[cons] = 20.0
    vessels = ((y - 100) ** 2 + (x - 45) ** 2 <= 1.5**2) | ((z - 20) ** 2 + (y - 40) ** 2 <= 1.5**2)
    hilar = ((y - 110) ** 2 + (x - 30) ** 2 <= 4.0**2) & (lung > 0)  # wider than the opening
    vessels = (vessels & (lung > 0)) | hilar
    hu[vessels] = 40.0
    hu += rng.normal(0.0, 10.0, SHAPE).astype(np.float32)
    return hu, lung, ggo, cons, vessels


def _segment(hu, lung, positive=None, heatmap=None, params=None):
    volume = Volume.from_spacing(hu, SPACING)
    positive = np.ones(SHAPE[0], bool) if positive is None else positive
    heatmap = (lung > 0).astype(np.float32) if heatmap is None else heatmap
    return segment_lesions(hu, lung, None, heatmap, positive, volume.affine, SPACING, params)


def test_sphere_volumes_and_vessels_not_counted():
    hu, lung, ggo, cons, vessels = phantom()
    result = _segment(hu, lung)
    cm3 = np.prod(SPACING) / 1000.0
    ggo_cm3 = np.count_nonzero(result.labels == GGO) * cm3
    cons_cm3 = np.count_nonzero(result.labels == CONSOLIDATION) * cm3
    assert ggo_cm3 == pytest.approx(SPHERE_CM3, rel=0.2)
    assert cons_cm3 == pytest.approx(SPHERE_CM3, rel=0.2)
    assert not result.labels[vessels].any()          # vessel voxels: no lesion
    found = result.labels > 0
    far = ~(np.asarray(ggo) | cons)
    assert np.count_nonzero(found & far) * cm3 < 0.1 * SPHERE_CM3  # rims, vessels: little
    assert not (found & (lung == 0)).any()
    # the density measures agree with the mask (PO) and with the consolidation (PHO)
    d = result.density
    assert d.percent_opacity == pytest.approx(100 * (ggo_cm3 + cons_cm3) / d.parenchyma_cm3,
                                              rel=0.05)
    assert d.percent_high_opacity == pytest.approx(100 * cons_cm3 / d.parenchyma_cm3, rel=0.15)
    assert -870 < d.mean_lung_hu < -800


def test_gated_by_positive_slices_and_nothing_without_them():
    hu, lung, ggo, cons, _ = phantom(1)
    none = _segment(hu, lung, positive=np.zeros(SHAPE[0], bool))
    assert not none.labels.any()
    assert none.density.percent_opacity == 0.0 and none.density.parenchyma_cm3 > 0
    # positive slices only far above the spheres (z 0-9 mm): the lesions lie elsewhere
    positive = np.zeros(SHAPE[0], bool)
    positive[:6] = True
    assert not _segment(hu, lung, positive=positive).labels.any()
    # one positive slice through the spheres keeps each whole 3D lesion
    positive = np.zeros(SHAPE[0], bool)
    positive[24] = True
    labels = _segment(hu, lung, positive=positive).labels
    others = np.arange(SHAPE[0]) != 24
    assert np.count_nonzero(labels[others]) > 0.8 * np.count_nonzero(labels)


def test_dependent_density_is_not_disease():
    """Normal lung rising from -870 (anterior) to -670 HU (posterior), no lesion: almost
    nothing is called ground glass although the dorsal lung is above -750 HU."""
    hu, lung, _, _, _ = phantom(2, gradient_hu=200.0, spheres=False)
    result = _segment(hu, lung)
    assert np.count_nonzero(result.labels) / np.count_nonzero(lung) < 0.01
    plain = _segment(hu, lung, params=LesionParams(dependent_margin_hu=0.0))
    assert np.count_nonzero(plain.labels) / np.count_nonzero(lung) > 0.1  # what it avoids


def test_density_measures_exact():
    hu = np.full((2, 4, 5), -900.0, dtype=np.float32)
    parenchyma = np.ones(hu.shape, bool)
    parenchyma[:, 0] = False                      # 10 voxels outside: 30 measured
    lesion = np.zeros(hu.shape, bool)
    hu[0, 1, :3] = -500.0                         # 3 GGO voxels
    hu[1, 2, :2] = -100.0                         # 2 high-opacity voxels
    lesion[0, 1, :3] = lesion[1, 2, :2] = True
    lesion[:, 0, 0] = True                        # outside the parenchyma: not counted
    hu[:, 0] = 500.0                              # nor its HU
    d = density_measures(hu, parenchyma, lesion, voxel_volume_mm3=2.0)
    assert d.parenchyma_cm3 == pytest.approx(30 * 2.0 / 1000.0)
    assert d.percent_opacity == pytest.approx(100.0 * 5 / 30)
    assert d.percent_high_opacity == pytest.approx(100.0 * 2 / 30)
    assert d.mean_lung_hu == pytest.approx((25 * -900.0 + 3 * -500.0 + 2 * -100.0) / 30)
    empty = density_measures(hu, np.zeros(hu.shape, bool), lesion, 1.0)
    assert empty.percent_opacity == 0.0 and np.isnan(empty.mean_lung_hu)


@pytest.mark.parametrize("flip", [False, True])
def test_ventral_dorsal_halves_follow_the_orientation(flip):
    """Lung spans rows 10-29 (20 rows): 10 each side; infection in rows 25-29 only, which
    are posterior (dorsal) when row index grows towards posterior, anterior when flipped."""
    lung = np.zeros((4, 40, 8), dtype=np.uint8)
    lung[:, 10:30] = 1
    infection = np.zeros_like(lung)
    infection[:, 25:30] = 1
    volume = Volume.from_spacing(np.zeros(lung.shape, np.float32), (2.0, 1.0, 1.0))
    affine = volume.affine.copy()
    if flip:  # rows run posterior -> anterior
        affine[:, 1] = -affine[:, 1]
    ventral, dorsal = case.halves(lung, infection, affine, voxel_volume_mm3=2.0)
    assert ventral.name == "ventral" and dorsal.name == "dorsal"
    assert ventral.lung_cm3 == dorsal.lung_cm3 == pytest.approx(4 * 10 * 8 * 2.0 / 1000)
    hit, clear = (ventral, dorsal) if flip else (dorsal, ventral)
    assert hit.infection_cm3 == pytest.approx(4 * 5 * 8 * 2.0 / 1000)
    assert hit.percent == pytest.approx(50.0) and clear.percent == 0.0


def test_measure_case_counts_ggo_and_consolidation():
    lung = np.zeros((6, 10, 10), dtype=np.uint8)
    lung[:, :, :5], lung[:, :, 5:] = 1, 2
    labels = np.zeros_like(lung)
    labels[1, :2, :2] = GGO            # 4 voxels
    labels[2, :3, 6:9] = CONSOLIDATION  # 9 voxels
    volume = Volume.from_spacing(np.zeros(lung.shape, np.float32), (1.0, 1.0, 1.0))
    m = case.measure_case(lung, (labels > 0).astype(np.uint8), volume.slice_positions_mm(),
                          1000.0, 0.0, lesion_labels=labels, affine=volume.affine)
    assert m.ggo_volume_cm3 == pytest.approx(4.0) and m.consolidation_volume_cm3 == 9.0
    assert m.infection_volume_cm3 == pytest.approx(13.0)
    assert sum(h.lung_cm3 for h in m.halves) == pytest.approx(m.lung_volume_cm3)


def test_working_grid_follows_the_spacing():
    assert working_factors((1.25, 0.7, 0.7), 1.4) == (1, 2, 2)
    assert working_factors((0.6, 0.98, 0.98), 1.4) == (2, 1, 1)
    assert working_factors((1.0, 0.7, 0.7), 1.4, 2.5) == (2, 2, 2)
    assert working_factors((2.5, 0.82, 0.82), 1.4, 2.5) == (1, 2, 2)
    assert working_factors((2.5, 0.7, 0.7), 1.4, 2.5) == (1, 2, 2)


def test_mediastinum_in_the_lung_outline_is_not_consolidation():
    """The lung outline running 3 mm into the mediastinum (two voxels of soft tissue inside
    the mask, as on real scans) is no lesion; a consolidation against it is."""
    hu, lung, _, _, _ = phantom(2, spheres=False)
    z, y, x = _grid()
    inner = (z > 4) & (z < 66) & (y > 12) & (y < 130)
    sliver = inner & (x >= 78) & (x < 81)  # of the 12 mm of mediastinum beside the right lung
    assert (hu[sliver] > 0).mean() > 0.9
    lung[sliver] = 1
    cm3 = np.prod(SPACING) / 1000.0
    assert np.count_nonzero(sliver) * cm3 > 2.0
    assert np.count_nonzero(_segment(hu, lung).labels) * cm3 < 0.1
    # a consolidation in the lung, resting on the mediastinum (a half sphere of 10 mm)
    cons = ((z - 36) ** 2 + (y - 70) ** 2 + (x - 76.5) ** 2 <= RADIUS_MM**2) & (x < 78)
    hu[cons] = 20.0
    found = _segment(hu, lung).labels == CONSOLIDATION
    assert np.count_nonzero(found & cons) >= 0.8 * np.count_nonzero(cons)
    away = sliver & (np.abs(z - 36) > 2 * RADIUS_MM)  # the sliver above and below it
    assert not (found & away).any()
