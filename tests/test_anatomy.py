"""Body, lung air, airway and coverage on synthetic volumes with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from covidct.anatomy import chest_anatomy, fill_body_slices
from covidct.coverage import chest_coverage
from covidct.decision import INDETERMINATE, NOT_SUSPECTED, decide

SPACING = (5.0, 2.0, 2.0)  # mm: no pooling, whole voxels


def _torso(z: int = 40, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Air around an elliptic body (40 HU) on a table; two 'lungs' (-850 HU with vessels),
    a trachea (-1000) joining them at the top, and a bowel-gas pocket (-1000) below them."""
    rng = np.random.default_rng(seed)
    hu = np.full((z, 128, 128), -1000.0, dtype=np.float32)
    zz, yy, xx = np.mgrid[:z, :128, :128]
    body = ((yy - 60) / 45.0) ** 2 + ((xx - 64) / 58.0) ** 2 <= 1.0
    hu[body] = 40.0
    hu[:, 112:115, 10:118] = 300.0  # the table, apart from the body
    lungs = {}
    for name, cx in (("right", 40), ("left", 88)):
        lung = (((yy - 58) / 28.0) ** 2 + ((xx - cx) / 18.0) ** 2 + ((zz - 22) / 16.0) ** 2
                <= 1.0)
        hu[lung] = -850.0 + rng.normal(0.0, 30.0, size=int(lung.sum()))
        lungs[name] = lung
    vessels = (lungs["right"] | lungs["left"]) & (rng.random(hu.shape) < 0.03)
    hu[vessels] = 40.0
    trachea = (((yy - 40) ** 2 + (xx - 64) ** 2) <= 16) & (zz >= 30)
    hu[trachea] = -1000.0
    gas = ((yy - 70) ** 2 + (xx - 64) ** 2 + ((zz - 3) * 2.5) ** 2) <= 100
    hu[gas] = -1000.0
    return hu, {**lungs, "trachea": trachea, "gas": gas, "body": body}


def test_lung_air_holds_the_lungs_not_the_bowel_gas_table_or_outside_air():
    hu, truth = _torso()
    anatomy = chest_anatomy(hu, SPACING)
    lungs = (truth["right"] | truth["left"]) & (hu < -400)
    assert anatomy.grid.factor == 1
    assert not anatomy.body[:, 112:115].any()  # the table
    assert anatomy.body[truth["body"]].mean() > 0.99
    assert not anatomy.lung_air[truth["gas"]].any()
    assert anatomy.lung_air[lungs].mean() > 0.99
    assert not (anatomy.lung_air & ~anatomy.body).any()
    verdicts = {round(r["gas_share"], 1): r["lung"] for r in anatomy.components}
    assert verdicts.get(1.0) is False  # the pure-air pocket was seen and rejected


def test_airway_is_grown_from_the_trachea_and_not_into_the_lungs():
    hu, truth = _torso()
    anatomy = chest_anatomy(hu, SPACING)
    airway = anatomy.airway
    assert airway[truth["trachea"]].mean() > 0.9
    assert airway[truth["right"] | truth["left"]].mean() < 0.01


def test_a_field_of_view_cut_through_the_body_still_encloses_the_lung():
    soft = np.ones((1, 40, 40), bool)
    soft[0, 10:30, 25:] = False  # a lung cut by the right image edge
    filled = fill_body_slices(soft)
    assert filled[0, 10:30, 25:].all()
    normal = np.zeros((1, 40, 40), bool)
    normal[0, 5:35, 5:35] = True
    normal[0, 10:20, 10:20] = False  # a hole: filled; outside air: not
    filled = fill_body_slices(normal)
    assert filled[0, 10:20, 10:20].all() and not filled[0, :5].any()


def test_coverage_extent_and_one_lung_warning():
    lung = np.zeros((60, 8, 8), np.uint8)
    lung[10:50, :, :4] = 1
    lung[10:50, :, 4:] = 2
    z_mm = np.arange(60) * 5.0
    has = lung.any(axis=(1, 2))
    cov = chest_coverage(lung, has, z_mm, voxel_volume_mm3=1000.0)  # 1 cm3 voxels
    assert cov.lung_extent_mm == pytest.approx(200.0)
    assert cov.right_cm3 == cov.left_cm3 == 40 * 32
    assert cov.warnings == ()
    lung[lung == 2] = 0
    one = chest_coverage(lung, has, z_mm, voxel_volume_mm3=1000.0)
    assert len(one.warnings) == 1 and "only one lung" in one.warnings[0]


def test_short_lung_extent_is_indeterminate_with_a_coverage_reason():
    prob, has = np.full(20, 0.1), np.ones(20, bool)
    area = np.full(20, 20000.0)  # 200 cm2 per slice: plenty of volume
    short = decide(prob, has, 0.5, 0.1, lung_area_mm2=area, slice_spacing_mm=3.0,
                   lung_extent_mm=60.0)
    assert short.label == INDETERMINATE and "bases or apices" in short.reason
    whole = decide(prob, has, 0.5, 0.1, lung_area_mm2=area, slice_spacing_mm=3.0,
                   lung_extent_mm=250.0)
    assert whole.label == NOT_SUSPECTED


def test_lungs_cut_by_the_field_of_view_are_indeterminate():
    lung = np.zeros((30, 16, 16), np.uint8)
    lung[:, 4:12, 0:7] = 1  # the right lung runs off the image edge on every slice
    lung[:, 4:12, 9:14] = 2
    has = np.ones(30, bool)
    cov = chest_coverage(lung, has, np.arange(30) * 10.0, voxel_volume_mm3=1000.0)
    assert cov.fov_cut_share == 1.0
    d = decide(np.zeros(30), has, 0.5, 0.1, fov_cut_share=cov.fov_cut_share)
    assert d.label == INDETERMINATE and "field of view" in d.reason
    lung[:, :, 0] = 0
    assert chest_coverage(lung, has, np.arange(30) * 10.0, 1000.0).fov_cut_share == 0.0


def test_open_in_plane_inside_the_box_equals_the_whole_grid():
    """open_in_plane filters only the mask's box grown by the filters' reach: the result is
    the separable min/max opening of the whole grid, on masks touching the edges too."""
    from scipy import ndimage

    from covidct.anatomy import open_in_plane

    rng = np.random.default_rng(3)
    for _ in range(60):
        shape = tuple(int(n) for n in rng.integers(8, 40, 3))
        mask = np.zeros(shape, dtype=bool)
        for _ in range(int(rng.integers(1, 5))):  # blocks, thin ones too, some at the edges
            z0, y0, x0 = (int(rng.integers(0, n)) for n in shape)
            dy, dx = (int(d) for d in rng.integers(1, 12, 2))
            mask[z0:z0 + 3, y0:y0 + dy, x0:x0 + dx] = True
        radius, spacing = float(rng.choice([0.5, 1.5, 3.0])), (0.7, 1.0)
        size = [1] + [2 * max(int(round(radius / s)), 1) + 1 for s in spacing]
        whole = ndimage.maximum_filter(ndimage.minimum_filter(mask.view(np.uint8), size=size),
                                       size=size) > 0
        np.testing.assert_array_equal(open_in_plane(mask, radius, spacing), whole)
    assert not open_in_plane(np.zeros((2, 5, 5), bool), 1.0, (1.0, 1.0)).any()
