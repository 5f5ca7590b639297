"""Threshold calibration on arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from covidct.train.calibrate import (
    DEFAULT_SLICE_THRESHOLD,
    calibrate_thresholds,
    case_threshold_balanced,
    positive_slice_ratio,
    slice_threshold_youden,
)


def test_youden_separable_is_midpoint() -> None:
    prob = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    labels = np.array([0, 0, 0, 1, 1, 1], bool)
    threshold, details = slice_threshold_youden(prob, labels)
    assert threshold == pytest.approx(0.5)
    assert details["youden_j"] == 1.0 and details["slice_auc"] == 1.0


def test_youden_with_overlap() -> None:
    # At t=0.6: sens 3/4, spec 3/3 -> J 0.75; at t=0.4: sens 4/4, spec 2/3 -> J 0.667
    prob = np.array([0.1, 0.2, 0.5, 0.4, 0.6, 0.7, 0.9])
    labels = np.array([0, 0, 0, 1, 1, 1, 1], bool)
    threshold, details = slice_threshold_youden(prob, labels)
    assert threshold == pytest.approx(0.55)
    assert details["youden_j"] == pytest.approx(0.75)


def test_youden_one_class_falls_back() -> None:
    threshold, details = slice_threshold_youden(np.array([0.2, 0.3]), np.array([1, 1]))
    assert threshold == DEFAULT_SLICE_THRESHOLD and "default" in details["method"]


def test_case_threshold_midpoint_of_gap() -> None:
    ratios = np.array([0.0, 0.02, 0.05, 0.25, 0.4])
    labels = np.array([0, 0, 0, 1, 1], bool)
    threshold, details = case_threshold_balanced(ratios, labels)
    assert threshold == pytest.approx(0.15)
    assert details["balanced_accuracy"] == 1.0


def test_case_threshold_overlap_prefers_balanced_accuracy() -> None:
    # 1 positive among 4 negatives: cut 0.35 keeps sens 1, spec 3/4 (bacc .875);
    # cut 0.45 has sens 0, spec 1 (bacc .5) though its accuracy would be higher.
    ratios = np.array([0.1, 0.2, 0.3, 0.5, 0.4])
    labels = np.array([0, 0, 0, 0, 1], bool)
    threshold, details = case_threshold_balanced(ratios, labels)
    assert threshold == pytest.approx(0.35)
    assert details["balanced_accuracy"] == pytest.approx(0.875)


def test_calibrate_thresholds_end_to_end() -> None:
    has_lung = np.array([0, 1, 1, 1, 1, 1, 1, 1, 1, 0], bool)
    neg = np.array([0.9, 0.1, 0.2, 0.1, 0.3, 0.2, 0.1, 0.2, 0.1, 0.9])
    pos = np.array([0.0, 0.1, 0.8, 0.9, 0.7, 0.2, 0.1, 0.2, 0.1, 0.0])
    pos_labels = np.array([0, 0, 1, 1, 1, 0, 0, 0, 0, 0], bool)
    slice_t, case_t, details = calibrate_thresholds(
        [neg, pos, pos], [has_lung] * 3, [np.zeros(10, bool), pos_labels, None],
        ["negative", "covid", None])
    assert slice_t == pytest.approx(0.5)  # between 0.3 (top negative) and 0.7
    assert case_t == pytest.approx(3 / 8 / 2)  # ratios 0 and 3/8
    assert details["slice"]["slices"] == 16
    assert positive_slice_ratio(pos, has_lung, slice_t) == pytest.approx(3 / 8)
    assert positive_slice_ratio(pos, np.zeros(10, bool), slice_t) is None


def test_calibrate_models_runs_models_on_validation_cases(tmp_path, monkeypatch) -> None:
    from covidct.train import predict as predict_mod
    from covidct.train.calibrate import calibrate_models
    from covidct.train.datasets import discover_cases
    from test_evaluate import make_synth, oracle

    make_synth(tmp_path)
    monkeypatch.setattr(predict_mod, "predict_case", oracle)
    seen = []
    slice_t, case_t, details = calibrate_models(object(), discover_cases(tmp_path),
                                                progress=seen.append)
    assert seen == ["case_000", "case_001", "case_002", "case_003"]
    assert 0.0 < slice_t <= 1.0  # oracle: p 0 on clean slices, 1 on infected ones
    assert case_t == pytest.approx(0.375 / 2)  # ratios 0 (negative) and 3/8 (covid)
    assert details["case"]["balanced_accuracy"] == 1.0
    assert details["validation_cases"] == seen


def test_calibrate_case_thresholds_flat_layout() -> None:
    from covidct.train.calibrate import calibrate_case_thresholds

    probs = np.array([0.1, 0.2, 0.1, 0.9, 0.8, 0.1, 0.2, 0.1])
    labels = np.array([0, 0, 0, 1, 1, 0, 0, 0], bool)
    owners = np.array([0, 0, 0, 1, 1, 1, 1, 1])  # case 0: 3 slices, case 1: 5 slices
    details = calibrate_case_thresholds(probs, labels, owners, [False, "covid"])
    assert details["slice_threshold"] == pytest.approx(0.5)  # between 0.2 and 0.8
    assert details["case_threshold"] == pytest.approx(0.2)  # ratios 0 and 2/5
