"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from covidct.train.metrics import (
    accuracy,
    balanced_accuracy,
    dice,
    roc_auc,
    roc_curve,
    sensitivity_specificity,
    spearman,
)


def test_dice_known_values() -> None:
    a = np.zeros((4, 4), np.uint8)
    b = np.zeros((4, 4), np.uint8)
    a[0, :4] = 1  # 4 pixels
    b[0, 2:4] = 2  # 2 pixels, 2 shared: 2*2 / (4+2)
    assert dice(a, b) == pytest.approx(2 / 3)
    assert dice(np.zeros(3), np.zeros(3)) == 1.0
    assert dice(a, np.zeros_like(a)) == 0.0
    with pytest.raises(ValueError):
        dice(a, np.zeros(3))


def test_auc_known_value_with_ties() -> None:
    # positives 0.8, 0.4; negatives 0.4, 0.1. Pairs: (0.8>0.4) 1, (0.8>0.1) 1,
    # (0.4=0.4) 0.5, (0.4>0.1) 1 -> 3.5 / 4
    assert roc_auc([0.8, 0.4, 0.4, 0.1], [1, 1, 0, 0]) == pytest.approx(0.875)
    assert roc_auc([0.1, 0.2, 0.3], [1, 0, 0]) == pytest.approx(0.0)
    assert roc_auc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
    assert math.isnan(roc_auc([0.1, 0.2], [1, 1]))


def test_roc_curve_points_and_trapezoid_matches_auc() -> None:
    scores, labels = [0.8, 0.4, 0.4, 0.1], [1, 1, 0, 0]
    fpr, tpr, thr = roc_curve(scores, labels)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1.0])
    np.testing.assert_allclose(tpr, [0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(thr, [np.inf, 0.8, 0.4, 0.1])
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(roc_auc(scores, labels))


def test_sensitivity_specificity_at_threshold() -> None:
    scores = [0.9, 0.6, 0.5, 0.2, 0.7, 0.1]
    labels = [1, 1, 1, 1, 0, 0]
    sens, spec = sensitivity_specificity(scores, labels, 0.5)  # 0.5 counts as positive
    assert (sens, spec) == (pytest.approx(0.75), pytest.approx(0.5))
    sens, spec = sensitivity_specificity([0.1], [0], 0.5)
    assert math.isnan(sens) and spec == 1.0


def test_accuracy_and_balanced_accuracy() -> None:
    pred = np.array([1, 1, 0, 0, 0], bool)
    labels = np.array([1, 0, 0, 0, 0], bool)
    assert accuracy(pred, labels) == pytest.approx(0.8)
    assert balanced_accuracy(pred, labels) == pytest.approx((1.0 + 0.75) / 2)


def test_spearman_known_values() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks x: 1 2 3 4 5, y: 2 1 4 3 5 -> d^2 sum 4 -> 1 - 6*4/(5*24) = 0.8
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
