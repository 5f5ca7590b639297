"""Choosing the slice and case thresholds on a validation split (never on test data).

1. Slice threshold: maximises Youden's J (sensitivity + specificity - 1) over the
   validation lung slices; placed midway between the chosen score and the next lower
   one, so the validation decisions are the same but the margin is larger.
2. Case threshold: over the validation cases' positive-slice ratios (with that slice
   threshold), the cut maximising balanced accuracy (then accuracy); cuts are midpoints
   between consecutive distinct ratios, and among equally good cuts the middle one is
   taken, so with separable classes it is the midpoint of the gap between them.

The case rule is `ratio > case_threshold` (covidct.decision), the slice rule
`prob >= slice_threshold`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from covidct.decision import MIN_LUNG_SLICES
from covidct.errors import DataError
from covidct.train.metrics import accuracy, balanced_accuracy, roc_auc, roc_curve

logger = logging.getLogger(__name__)

DEFAULT_SLICE_THRESHOLD = 0.5
DEFAULT_CASE_THRESHOLD = 0.1


def slice_threshold_youden(prob: np.ndarray, labels: np.ndarray) -> tuple[float, dict[str, Any]]:
    """(threshold, details) maximising Youden's J on validation slices."""
    prob = np.asarray(prob, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=bool).reshape(-1)
    if labels.all() or not labels.any():
        logger.warning("Validation slices hold one class only; slice threshold left at %.2f.",
                       DEFAULT_SLICE_THRESHOLD)
        return DEFAULT_SLICE_THRESHOLD, {"method": "default (one class only)",
                                         "slices": int(labels.size)}
    fpr, tpr, thresholds = roc_curve(prob, labels)
    j = tpr - fpr
    best = int(np.argmax(j[1:])) + 1  # skip the (0, 0) point at +inf
    chosen = thresholds[best]
    lower = prob[prob < chosen]
    threshold = float((chosen + lower.max()) / 2.0) if lower.size else float(chosen)
    details = {"method": "youden", "youden_j": round(float(j[best]), 4),
               "sensitivity": round(float(tpr[best]), 4),
               "specificity": round(float(1.0 - fpr[best]), 4),
               "slice_auc": round(roc_auc(prob, labels), 4), "slices": int(labels.size),
               "positive_slices": int(labels.sum())}
    return float(np.clip(threshold, 0.0, 1.0)), details


def case_threshold_balanced(ratios: np.ndarray, labels: np.ndarray
                            ) -> tuple[float, dict[str, Any]]:
    """(threshold, details): the cut of `ratio > t` with the best balanced accuracy."""
    ratios = np.asarray(ratios, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=bool).reshape(-1)
    if ratios.size == 0 or labels.all() or not labels.any():
        logger.warning("Validation cases hold one class only; case threshold left at %.2f.",
                       DEFAULT_CASE_THRESHOLD)
        return DEFAULT_CASE_THRESHOLD, {"method": "default (one class only)",
                                        "cases": int(labels.size)}
    values = np.unique(ratios)
    cuts = np.r_[values[0] - 1e-6, (values[:-1] + values[1:]) / 2.0, values[-1]]
    scores = np.array([(balanced_accuracy(ratios > t, labels), accuracy(ratios > t, labels))
                       for t in cuts])
    best_score = scores.max(axis=0)[0]
    tied = np.flatnonzero(scores[:, 0] >= best_score - 1e-12)
    tied = tied[scores[tied, 1] >= scores[tied, 1].max() - 1e-12]
    index = int(tied[len(tied) // 2])
    threshold = float(np.clip(cuts[index], 0.0, 1.0))
    details = {"method": "balanced accuracy, middle of ties",
               "balanced_accuracy": round(float(scores[index, 0]), 4),
               "accuracy": round(float(scores[index, 1]), 4),
               "case_auc": round(roc_auc(ratios, labels), 4), "cases": int(labels.size),
               "positive_cases": int(labels.sum())}
    return threshold, details


def positive_slice_ratio(prob: np.ndarray, has_lung: np.ndarray, slice_threshold: float
                         ) -> float | None:
    """Positive lung slices / lung slices (None with too few lung slices to decide)."""
    has_lung = np.asarray(has_lung, dtype=bool)
    n = int(has_lung.sum())
    if n < MIN_LUNG_SLICES:
        return None
    return float(np.sum(has_lung & (np.asarray(prob) >= slice_threshold)) / n)


def calibrate_thresholds(probs: Sequence[np.ndarray], has_lung: Sequence[np.ndarray],
                         slice_labels: Sequence[np.ndarray | None],
                         case_labels: Sequence[str | None]
                         ) -> tuple[float, float, dict[str, Any]]:
    """Both thresholds from per-case slice probabilities and labels (lists, one per case).

    Slices count where they hold lung and have a label; cases where their label is known
    and they have enough lung slices.
    """
    slice_p, slice_y = [], []
    for p, lung, y in zip(probs, has_lung, slice_labels, strict=True):
        if y is not None:
            keep = np.asarray(lung, dtype=bool)
            slice_p.append(np.asarray(p)[keep])
            slice_y.append(np.asarray(y, dtype=bool)[keep])
    if not slice_p:
        raise DataError("No validation case has slice labels; cannot calibrate.")
    slice_t, slice_details = slice_threshold_youden(np.concatenate(slice_p),
                                                    np.concatenate(slice_y))
    ratios, y_case = [], []
    for p, lung, label in zip(probs, has_lung, case_labels, strict=True):
        ratio = positive_slice_ratio(p, lung, slice_t)
        if label in ("covid", "negative") and ratio is not None:
            ratios.append(ratio)
            y_case.append(label == "covid")
    case_t, case_details = case_threshold_balanced(np.asarray(ratios), np.asarray(y_case))
    details = {"slice": slice_details, "case": case_details,
               "slice_threshold": round(slice_t, 6), "case_threshold": round(case_t, 6)}
    return slice_t, case_t, details


def calibrate_models(bundle: Any, records: Sequence[Any],
                     progress: Callable[[str], None] | None = None
                     ) -> tuple[float, float, dict[str, Any]]:
    """Run the lung model and the classifier on validation cases, then calibrate.

    The classifier sees the predicted lung (as at inference), slice labels come from
    the dataset's reference masks.
    """
    from covidct.train.datasets import load_case
    from covidct.train.predict import predict_case

    probs, lungs, slice_labels, labels = [], [], [], []
    for record in records:
        case = load_case(record)
        if progress is not None:
            progress(case.case_id)
        pred = predict_case(bundle, case.volume)
        probs.append(pred.prob)
        lungs.append(pred.has_lung)
        slice_labels.append(case.slice_labels)
        labels.append(case.label)
    slice_t, case_t, details = calibrate_thresholds(probs, lungs, slice_labels, labels)
    details["validation_cases"] = [r.case_id for r in records]
    return slice_t, case_t, details


def calibrate_case_thresholds(probs: np.ndarray, slice_labels: np.ndarray,
                              case_index: np.ndarray, case_labels: Sequence[Any]
                              ) -> dict[str, Any]:
    """`calibrate_thresholds` on a flat slice set (training's SliceSet layout).

    probs, slice_labels, case_index: (n,) over lung slices; case_index points into
    case_labels ('covid' / 'negative' / None, or bools). Returns the details dict with
    'slice_threshold' and 'case_threshold'.
    """
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    slice_labels = np.asarray(slice_labels, dtype=bool).reshape(-1)
    case_index = np.asarray(case_index).reshape(-1)
    per_prob, per_lung, per_slices, per_label = [], [], [], []
    for index, label in enumerate(case_labels):
        mine = case_index == index
        per_prob.append(probs[mine])
        per_lung.append(np.ones(int(mine.sum()), dtype=bool))
        per_slices.append(slice_labels[mine])
        if isinstance(label, bool | np.bool_):
            label = "covid" if label else "negative"
        per_label.append(label)
    _, _, details = calibrate_thresholds(per_prob, per_lung, per_slices, per_label)
    return details
