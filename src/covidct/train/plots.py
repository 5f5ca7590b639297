"""Evaluation figures: ROC curves and the HU-threshold baseline's worst cases (matplotlib, Agg)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

DISPLAY_WINDOW_HU = (-1000.0, 200.0)


def _figure(*args: Any, **kwargs: Any) -> Any:
    from matplotlib.figure import Figure  # Agg canvas, no pyplot global state

    return Figure(*args, **kwargs)


def roc_plot(summary: dict[str, Any], path: Path) -> Path:
    """Slice-level and case-level ROC curves of an evaluation summary."""
    fig = _figure(figsize=(5, 5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for key, name in (("slice", "slices"), ("case", "cases (positive-slice ratio)")):
        roc = summary[key]["roc"]
        auc = summary[key].get("auc", summary[key].get("auc_positive_ratio"))
        if roc["fpr"] and None not in roc["fpr"] and None not in roc["tpr"]:
            label = f"{name}, AUC {auc:.3f}" if auc is not None else name
            ax.plot(roc["fpr"], roc["tpr"], marker=".", label=label)
    ax.plot([0, 1], [0, 1], color="0.7", linestyle="--", linewidth=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.02),
           title="ROC")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def baseline_worst_cases(cases: Sequence[Any], path: Path, count: int = 4) -> Path | None:
    """CT slices where the baseline fails most, reference (green), baseline (red) and model
    (blue, dashed) lung outlines. `cases`: CaseEvaluations with a worst_slice."""
    ranked = sorted((c for c in cases if c.worst_slice is not None
                     and c.baseline_dice is not None), key=lambda c: c.baseline_dice)[:count]
    if not ranked:
        return None
    fig = _figure(figsize=(3.2 * len(ranked), 3.6), dpi=100)
    low, high = DISPLAY_WINDOW_HU
    for i, case in enumerate(ranked):
        ws = case.worst_slice
        ax = fig.add_subplot(1, len(ranked), i + 1)
        ax.imshow(np.clip(ws.hu, low, high), cmap="gray", vmin=low, vmax=high)
        for mask, color, style in ((ws.reference, "lime", "solid"), (ws.baseline, "red", "solid"),
                                   (ws.model, "deepskyblue", "dashed")):
            if mask.any() and not mask.all():
                ax.contour(mask.astype(float), levels=[0.5], colors=color, linewidths=1,
                           linestyles=style)
        model = f", model {case.lung_dice:.2f}" if case.lung_dice is not None else ""
        ax.set_title(f"{case.case_id} z={ws.index}\nbaseline Dice {case.baseline_dice:.2f}"
                     f"{model}", fontsize=8)
        ax.axis("off")
    fig.suptitle("HU-threshold baseline, worst cases: reference green, baseline red, "
                 "model blue (dashed)", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
