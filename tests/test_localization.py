"""Known answers for the localization measures of `covidct evaluate`."""

from __future__ import annotations

import numpy as np
import pytest

from covidct.train.localization import case_localization, lobe_hits, pooled_localization


def test_case_localization_dice_and_volumes():
    truth = np.zeros((4, 10, 10), np.uint8)
    truth[1, :4, :5] = 2                      # 20 voxels (label 2 counts as lesion)
    found = np.zeros_like(truth)
    found[1, :2, :5] = 1                      # 10 voxels, all inside
    row = case_localization(found, truth, 500.0, infection_cm3=5.0, corona_score_cm3=3.0)
    assert row["lesion_dice"] == pytest.approx(2 * 10 / 30)
    assert row["true_infection_cm3"] == pytest.approx(10.0)
    clean = case_localization(found, np.zeros_like(truth), 500.0, 5.0, 3.0)
    assert clean["lesion_dice"] is None and clean["true_infection_cm3"] == 0.0


def test_pooled_localization():
    rows = [{"lesion_dice": d, "infection_cm3": f, "true_infection_cm3": t,
             "corona_score_cm3": c}
            for d, f, t, c in [(0.5, 50.0, 100.0, 1.0), (0.7, 240.0, 200.0, 2.0),
                               (0.9, 300.0, 400.0, 3.0), (None, 7.0, 0.0, 0.5)]]
    out = pooled_localization(rows + [None])
    assert out["cases_with_infection"] == 3 and out["cases_without"] == 1
    assert out["lesion_dice_median"] == pytest.approx(0.7)
    assert out["infection_volume_median_relative_error"] == pytest.approx(0.25)  # .5,.2,.25
    assert out["infection_volume_median_signed_relative_error"] == pytest.approx(-0.25)
    assert out["infection_volume_spearman"] == pytest.approx(1.0)
    assert out["corona_score_spearman"] == pytest.approx(1.0)
    assert out["max_infection_cm3_without"] == pytest.approx(7.0)


def test_lobe_hits_by_lung_side():
    lung = np.zeros((3, 4, 8), np.uint8)
    lung[:, :, :4], lung[:, :, 4:] = 1, 2     # right: x < 4, left: x >= 4
    infection = np.zeros_like(lung)
    infection[0, 0, 1] = 1                    # right lung, slice 0
    infection[2, 0, 6] = 1                    # left lung, slice 2
    lobes = {"RLL": np.array([1, 1, -1], np.int8),   # slice 0 hit, slice 1 miss
             "LLL": np.array([1, 0, 1], np.int8),    # slice 0 miss (lesion is right), 2 hit
             "RUL": np.array([0, 0, 0], np.int8)}
    out = lobe_hits(infection, lung, lobes)
    assert out["labelled_lobe_slices"] == 4 and out["with_lesion"] == 2
    assert out["share"] == pytest.approx(0.5)
    assert out["per_lobe"]["RLL"] == {"labelled_slices": 2, "with_lesion": 1}
    assert out["per_lobe"]["RUL"] == {"labelled_slices": 0, "with_lesion": 0}
