"""The case decision rule with hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

from covidct.decision import COVID_SUSPECTED, INDETERMINATE, NOT_SUSPECTED, decide


def test_ratio_over_lung_slices_only() -> None:
    prob = np.array([0.9, 0.9, 0.2, 0.6, 0.1, 0.5, 0.9])
    has_lung = np.array([0, 1, 1, 1, 1, 1, 0], bool)  # 5 lung slices, 3 positive (>= 0.5)
    d = decide(prob, has_lung, 0.5, 0.5)
    assert (d.lung_slices, d.positive_slices) == (5, 3)
    assert d.positive_slice_ratio == pytest.approx(0.6)
    assert d.label == COVID_SUSPECTED and d.threshold == 0.5
    assert decide(prob, has_lung, 0.5, 0.6).label == NOT_SUSPECTED  # 0.6 is not > 0.6
    assert decide(prob, has_lung, 0.55, 0.3).positive_slices == 2


def test_indeterminate_without_enough_lung() -> None:
    none = decide(np.zeros(40), np.zeros(40, bool), 0.5, 0.2)
    assert none.label == INDETERMINATE and none.positive_slice_ratio is None
    assert "no slice" in none.reason
    single = decide(np.array([0.9]), np.array([True]), 0.5, 0.2)
    assert single.label == INDETERMINATE and "1 slice" in single.reason


def test_indeterminate_on_small_lung_volume() -> None:
    has_lung = np.ones(10, bool)
    prob = np.full(10, 0.9)
    area = np.full(10, 2000.0)  # 20 cm2 per slice, 5 mm slices: 10 cm3 of lung
    d = decide(prob, has_lung, 0.5, 0.2, lung_area_mm2=area, slice_spacing_mm=5.0)
    assert d.label == INDETERMINATE and d.lung_volume_cm3 == pytest.approx(100.0)
    big = decide(prob, has_lung, 0.5, 0.2, lung_area_mm2=area * 10, slice_spacing_mm=5.0)
    assert big.label == COVID_SUSPECTED and big.lung_volume_cm3 == pytest.approx(1000.0)


def test_nan_and_shape_mismatch() -> None:
    d = decide(np.array([np.nan, 0.9, 0.9, 0.1]), np.ones(4, bool), 0.5, 0.4)
    assert d.positive_slices == 2 and d.label == COVID_SUSPECTED
    with pytest.raises(ValueError, match="differ"):
        decide(np.zeros(3), np.zeros(4, bool), 0.5, 0.5)
