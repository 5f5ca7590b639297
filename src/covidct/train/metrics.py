"""Evaluation metrics on plain arrays: Dice, ROC, sensitivity/specificity, Spearman.

Undefined values (an AUC with one class only, a sensitivity without positives) are NaN,
never an exception, so a report can show them as such.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two binary masks (non-zero = foreground); 1.0 when both are empty."""
    a, b = np.asarray(pred) > 0, np.asarray(truth) > 0
    if a.shape != b.shape:
        raise ValueError(f"Mask shapes differ: {a.shape} vs {b.shape}.")
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.sum(a & b)) / total


def _binary(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores ({s.size}) and labels ({y.size}) differ in length.")
    return s, y


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve by ranks (Mann-Whitney U); ties count one half."""
    s, y = _binary(scores, labels)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)  # average ranks for ties
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(scores: np.ndarray, labels: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds): one point per distinct score, a case positive when score >= t.

    Starts at (0, 0) with threshold +inf and ends at (1, 1) at the lowest score.
    """
    s, y = _binary(scores, labels)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), s.size - 1] if s.size else np.array([], int)
    tp = np.cumsum(y)[distinct]
    fp = np.cumsum(~y)[distinct]
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    tpr = np.r_[0.0, tp / n_pos] if y.any() else np.r_[0.0, np.full(distinct.size, np.nan)]
    fpr = np.r_[0.0, fp / n_neg] if (~y).any() else np.r_[0.0, np.full(distinct.size, np.nan)]
    return fpr, tpr, np.r_[np.inf, s[distinct]]


def confusion(pred: np.ndarray, labels: np.ndarray) -> tuple[int, int, int, int]:
    """(tp, fp, tn, fn) of boolean predictions."""
    p, y = _binary(pred, labels)
    p = p.astype(bool)
    return (int(np.sum(p & y)), int(np.sum(p & ~y)), int(np.sum(~p & ~y)), int(np.sum(~p & y)))


def sensitivity_specificity(scores: np.ndarray, labels: np.ndarray,
                            threshold: float) -> tuple[float, float]:
    """(sensitivity, specificity) of `score >= threshold`; NaN where a class is absent."""
    s, y = _binary(scores, labels)
    tp, fp, tn, fn = confusion(s >= threshold, y)
    sens = tp / (tp + fn) if tp + fn else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    return float(sens), float(spec)


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    tp, fp, tn, fn = confusion(pred, labels)
    total = tp + fp + tn + fn
    return (tp + tn) / total if total else float("nan")


def balanced_accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Mean of sensitivity and specificity (the one defined, if only one is)."""
    tp, fp, tn, fn = confusion(pred, labels)
    rates = [r for r, n in ((tp / max(tp + fn, 1), tp + fn), (tn / max(tn + fp, 1), tn + fp))
             if n]
    return float(np.mean(rates)) if rates else float("nan")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (Pearson of average ranks); NaN when a side is constant."""
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"Lengths differ: {x.size} vs {y.size}.")
    if x.size < 2:
        return float("nan")
    rx, ry = rankdata(x) - (x.size + 1) / 2.0, rankdata(y) - (y.size + 1) / 2.0
    denom = float(np.sqrt(np.sum(rx**2) * np.sum(ry**2)))
    return float(np.sum(rx * ry) / denom) if denom > 0 else float("nan")
