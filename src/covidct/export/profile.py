"""slice_profile.png: p(abnormal) per slice against z (mm), with the slice threshold (and the
classifier's probability alone where the lesion evidence changed it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from covidct.pipeline import CaseResult


def render_profile(result: CaseResult, path: Path, dpi: int = 90) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    z_mm = result.volume.slice_positions_mm()
    prob = np.where(result.has_lung, result.prob, np.nan)
    fig = Figure(figsize=(7.0, 2.8), dpi=dpi)
    ax = fig.add_subplot()
    if result.classifier_prob is not None and not np.allclose(result.classifier_prob,
                                                              result.prob):
        ax.plot(z_mm, np.where(result.has_lung, result.classifier_prob, np.nan),
                color="0.6", lw=0.8, label="classifier alone")
    ax.plot(z_mm, prob, color="tab:blue", lw=1.2, marker=".", ms=3,
            label="p(abnormal): classifier and GGO")
    if result.positive.any():
        ax.scatter(z_mm[result.positive], result.prob[result.positive], color="tab:red", s=10,
                   zorder=3, label="positive slice")
    threshold = float(result.config.slice_threshold or 0.5)
    ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"threshold {threshold:.2f}")
    ax.set_xlabel("z (mm, inferior -> superior)")
    ax.set_ylabel("probability")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="upper right", fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return path
