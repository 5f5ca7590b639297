"""Known answers for covidct.case on synthetic masks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from covidct import case


def box_lungs(shape=(60, 40, 80)) -> np.ndarray:
    """Two box lungs: right (1) in x < 40, left (2) in x >= 40 (canonical: x runs R -> L)."""
    lung = np.zeros(shape, np.uint8)
    lung[:, 5:35, 5:38] = 1
    lung[:, 5:35, 42:75] = 2
    return lung


def sphere(shape, centre, radius_vox) -> np.ndarray:
    zz, yy, xx = np.indices(shape)
    c = np.asarray(centre)[:, None, None, None]
    return ((np.stack([zz, yy, xx]) - c) ** 2).sum(axis=0) <= radius_vox**2


@pytest.mark.parametrize(("percent", "score"), [
    (0.0, 0), (0.01, 1), (24.9, 1), (25.0, 2), (49.9, 2), (50.0, 3), (75.0, 3), (75.1, 4),
    (100.0, 4)])
def test_zone_score(percent, score):
    assert case.zone_score(percent) == score


def test_sphere_in_right_upper_zone_gives_known_volume_percent_and_scores():
    lung = box_lungs()
    z_mm = np.arange(60) * 1.0 + 100.0          # z increases superiorly
    infection = sphere(lung.shape, (52, 20, 20), 7) & (lung == 1)
    metrics = case.measure_case(lung, infection.astype(np.uint8), z_mm, 1.0, corona_score=0.0)

    assert metrics.infection_volume_cm3 == pytest.approx(4 / 3 * np.pi * 7**3 / 1000, rel=0.03)
    assert metrics.right_cm3 == pytest.approx(60 * 30 * 33 / 1000)
    assert metrics.lung_volume_cm3 == pytest.approx(2 * 60 * 30 * 33 / 1000)
    assert metrics.left_percent == 0.0
    zones = {(z.side, z.level): z for z in metrics.zones}
    upper = zones[("right", "upper")]
    # Upper third of 60 slices spanning 0..59 mm: t > 2/3 -> slices 40..59 (20 slices).
    assert upper.lung_cm3 == pytest.approx(20 * 30 * 33 / 1000)
    assert upper.percent == pytest.approx(100 * infection.sum() / (20 * 30 * 33))
    assert upper.score == 1
    assert all(z.score == 0 for key, z in zones.items() if key != ("right", "upper"))
    assert metrics.severity_score == 1
    assert metrics.percent_of_lung == pytest.approx(100 * infection.sum() / (lung > 0).sum())


def test_zone_scores_sum_to_severity():
    lung = box_lungs()
    z_mm = np.arange(60) * 2.0
    infection = np.zeros_like(lung)
    infection[40:, 5:35, 5:38] = 1     # right upper: 100 %
    infection[20:40, 5:20, 42:75] = 1  # left middle: 50 %
    infection[0:20, 5:10, 42:75] = 1   # left lower: 5/30 = 16.7 %
    metrics = case.measure_case(lung, infection, z_mm, 8.0, corona_score=1.0)
    zones = {(z.side, z.level): z.score for z in metrics.zones}
    assert zones == {("right", "upper"): 4, ("right", "middle"): 0, ("right", "lower"): 0,
                     ("left", "upper"): 0, ("left", "middle"): 3, ("left", "lower"): 1}
    assert metrics.severity_score == 8


def test_upper_is_superior_whatever_the_slice_order():
    lung = box_lungs()
    infection = np.zeros_like(lung)
    infection[:10, 5:35, 5:38] = 1  # first slices ...
    descending = case.measure_case(lung, infection, np.arange(60)[::-1] * 1.0, 1.0, 0.0)
    ascending = case.measure_case(lung, infection, np.arange(60) * 1.0, 1.0, 0.0)
    # ... are superior when z decreases with the index, inferior otherwise.
    assert {(z.side, z.level) for z in descending.zones if z.score} == {("right", "upper")}
    assert {(z.side, z.level) for z in ascending.zones if z.score} == {("right", "lower")}


def test_corona_score_of_constant_map_is_sum_times_voxel_volume():
    lung = box_lungs()
    heat = np.full(lung.shape, 0.25, np.float32)
    positive = np.zeros(60, bool)
    positive[10:30] = True
    voxel_mm3 = 0.7 * 0.7 * 2.5
    expected = 0.25 * (lung[10:30] > 0).sum() * voxel_mm3 / 1000
    assert case.corona_score_cm3(heat, lung, positive, voxel_mm3) == pytest.approx(expected)
    assert case.corona_score_cm3(heat, lung, np.zeros(60, bool), voxel_mm3) == 0.0


def test_infection_mask_inside_lung_and_only_on_positive_slices():
    lung = box_lungs()
    heat = np.zeros(lung.shape, np.float32)
    heat[20:40, 0:40, 0:40] = 0.9  # spills outside the lung in y and x
    positive = np.zeros(60, bool)
    positive[20:30] = True
    mask = case.infection_mask(heat, lung, positive, (1.0, 1.0, 1.0), threshold=0.5,
                               sigma_mm=1.0)
    assert mask.dtype == np.uint8
    assert not mask[lung == 0].any()
    assert mask[22:28, 10:30, 10:30].all()
    assert not mask[32:].any()  # slices 30-39 were not positive
    empty = case.infection_mask(heat, lung, np.zeros(60, bool), (1.0, 1.0, 1.0),
                                threshold=0.5, sigma_mm=1.0)
    assert not empty.any()


def _slab_field(dz: float, sigma_mm: float, in_mm: bool) -> np.ndarray:
    """A 12 mm slab (z in [24, 36) mm) on cells of dz mm from z = 0, Gaussian-smoothed:
    the centre column's profile."""
    centres = np.arange(0.0, 60.0, dz) + dz / 2
    field = np.zeros((centres.size, 9, 9), np.float32)
    field[(centres > 24.0) & (centres < 36.0)] = 1.0
    sigma = case.sigma_voxels(sigma_mm, (dz, 1.0, 1.0)) if in_mm else (sigma_mm,) * 3
    return ndimage.gaussian_filter(field, sigma, mode="nearest", truncate=3.0)[:, 4, 4]


def test_sigma_in_mm_smooths_the_same_at_any_slice_spacing():
    assert case.sigma_voxels(3.0, (2.5, 0.75, 0.5)) == pytest.approx((1.2, 4.0, 6.0))
    fine = _slab_field(1.0, 4.0, in_mm=True)
    fine_on_coarse = (fine[0::2] + fine[1::2]) / 2  # two 1 mm cells make one 2 mm cell
    coarse = _slab_field(2.0, 4.0, in_mm=True)
    assert np.abs(fine_on_coarse - coarse).max() < 0.03
    naive = _slab_field(2.0, 4.0, in_mm=False)  # sigma in voxels: twice the blur in mm
    assert np.abs(fine_on_coarse - naive).max() > 0.15

    lung = np.ones((60, 9, 9), np.uint8)
    for dz in (1.0, 2.0):
        z_mm = np.arange(0.0, 60.0, dz)
        heat = np.zeros((z_mm.size, 9, 9), np.float32)
        heat[np.abs(z_mm - 30.0) < 6.0] = 1.0
        mask = case.infection_mask(heat, lung[: z_mm.size], np.ones(z_mm.size, bool),
                                   (dz, 1.0, 1.0), threshold=0.5, sigma_mm=2.0)
        extent_mm = mask[:, 4, 4].sum() * dz
        assert extent_mm == pytest.approx(12.0, abs=dz)


def test_infection_mask_equals_the_full_volume_filter():
    rng = np.random.default_rng(1)
    lung = box_lungs()
    heat = np.zeros(lung.shape, np.float32)
    heat[25:35, 10:25, 10:30] = rng.random((10, 15, 20))
    positive = np.ones(60, bool)
    spacing = (2.0, 0.8, 0.8)
    got = case.infection_mask(heat, lung, positive, spacing, threshold=0.3, sigma_mm=2.0)
    candidate = ((heat > 0.3) & (lung > 0)).astype(np.float32)
    full = ndimage.gaussian_filter(candidate, case.sigma_voxels(2.0, spacing), mode="constant",
                                   truncate=3.0)
    np.testing.assert_array_equal(got, ((full > 0.5) & (lung > 0)).astype(np.uint8))
