"""How the infection-mask defaults (heatmap_threshold, infection_sigma_mm) were chosen.

Runs the pipeline once (shipped models) on a small synthetic TUNING set (its own seeds,
disjoint from analyze_accuracy.py's test seeds), keeps the heatmaps, then sweeps the two
settings: mean Dice against the true infection and median relative volume error.

    .venv/bin/python benchmarks/analyze_tuning.py [--cases 6]

Writes benchmarks/results/analyze_tuning.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
THRESHOLDS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4)
SIGMAS_MM = (0.0, 2.0, 3.0, 5.0)


def main() -> int:
    from covidct import case as case_mod
    from covidct.config import AnalysisConfig
    from covidct.models.registry import load_bundle
    from covidct.pipeline import analyze
    from covidct.synth import SynthParams, generate_case

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--seed", type=int, default=550000)
    args = parser.parse_args()
    bundle = load_bundle()
    cached = []
    for i in range(args.cases):
        synth = generate_case(args.seed + i, SynthParams(matrix=256, covid=True))
        result = analyze(synth.ct, AnalysisConfig(), bundle)
        cached.append((synth, result))
        print(f"case {i}: truth {synth.truth['infection_volume_cm3']:.0f} cm3, "
              f"{result.decision.label}, corona {result.metrics.corona_score_cm3:.0f}", flush=True)
    table = []
    for sigma in SIGMAS_MM:
        for threshold in THRESHOLDS:
            dices, errors = [], []
            for synth, r in cached:
                mask = case_mod.infection_mask(r.heatmap, r.lung_mask, r.positive,
                                               r.volume.spacing_mm, threshold=threshold,
                                               sigma_mm=sigma) > 0
                truth = np.asarray(synth.infection) > 0
                total = mask.sum() + truth.sum()
                dices.append(2 * (mask & truth).sum() / total if total else 1.0)
                true_cm3 = synth.truth["infection_volume_cm3"]
                found_cm3 = mask.sum() * r.volume.voxel_volume_mm3 / 1000
                errors.append((found_cm3 - true_cm3) / max(true_cm3, 1e-6))
            table.append({"sigma_mm": sigma, "threshold": threshold,
                          "dice_mean": round(float(np.mean(dices)), 4),
                          "volume_median_signed_rel_error": round(float(np.median(errors)), 4)})
            print(json.dumps(table[-1]), flush=True)
    corona = [{"truth_cm3": s.truth["infection_volume_cm3"],
               "corona_cm3": r.metrics.corona_score_cm3} for s, r in cached]
    best = max(table, key=lambda row: row["dice_mean"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "analyze_tuning.json").write_text(json.dumps(
        {"seeds": [args.seed, args.seed + args.cases - 1], "best_by_dice": best,
         "corona_vs_truth": corona, "sweep": table}, indent=2) + "\n")
    print("best by Dice:", best)
    return 0


if __name__ == "__main__":
    sys.exit(main())
