"""Would smoothing the slice probabilities along z raise slice AUC? Validation data only.

Lesions span several slices, so a slice's neighbours carry evidence about it. This reads
`covidct evaluate --json` outputs of calibration corpora (per-slice probabilities, the
predicted lung slices, the reference labels and the slice spacing), smooths each case's
probabilities over its lung slices with a Gaussian of sigma S mm along z (normalised
convolution, so the lung's first and last slices are not pulled towards 0), and reports
the pooled slice AUC as `covidct evaluate` counts it, for each sigma.

    .venv/bin/python benchmarks/slice_smoothing.py EVAL.json [EVAL.json ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d

from covidct.train.metrics import roc_auc

SIGMAS_MM = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0)


def smooth(prob: np.ndarray, has_lung: np.ndarray, sigma_mm: float, spacing_mm: float,
           ) -> np.ndarray:
    if sigma_mm <= 0:
        return prob
    sigma = sigma_mm / spacing_mm
    weight = gaussian_filter1d(has_lung.astype(np.float64), sigma, mode="constant")
    total = gaussian_filter1d(prob * has_lung, sigma, mode="constant")
    return np.where(has_lung, total / np.maximum(weight, 1e-9), 0.0)


def pooled_auc(cases: list[dict], sigma_mm: float) -> tuple[float, int]:
    probs, labels = [], []
    for case in cases:
        if case.get("slice_label") is None:
            continue
        prob = np.asarray(case["slice_prob"], np.float64)
        lung = np.asarray(case["slice_has_lung"], bool)
        label = np.asarray(case["slice_label"], bool)
        keep = lung | label  # as covidct.train.evaluate.slice_pool
        probs.append(smooth(prob, lung, sigma_mm, case["slice_spacing_mm"])[keep])
        labels.append(label[keep])
    prob, label = np.concatenate(probs), np.concatenate(labels)
    return roc_auc(prob, label), int(label.size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evaluations", type=Path, nargs="+")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    lines = ["corpus sigma_mm slice_auc slices"]
    for path in args.evaluations:
        cases = json.loads(path.read_text())["cases"]
        for sigma in SIGMAS_MM:
            auc, n = pooled_auc(cases, sigma)
            lines.append(f"{path.name} {sigma:g} {auc:.4f} {n}")
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
