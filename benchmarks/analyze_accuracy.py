"""Accuracy of `covidct analyze` (shipped models) on a fresh synthetic test set.

A new seed range and other scanner parameters than training (sharp kernel, reconstruction
circle, 384 matrix, 2-3 mm slices): each case is written as NIfTI and analysed by the real
command, in process (covidct.cli.main). Measured against the generator's truth:

- case decision accuracy (covid-suspected <-> COVID; indeterminate counts as wrong),
- infection Dice (COVID cases),
- infection volume and Corona score against the true infection volume: median relative
  error and Spearman correlation over the COVID cases.

    .venv/bin/python benchmarks/analyze_accuracy.py [--cases 16] [--seed 770000]

Writes benchmarks/results/analyze_accuracy.json and .md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def test_params(covid: bool):
    from covidct.synth import SynthParams

    return SynthParams(matrix=384, slice_mm=(2.0, 3.0), kernel="sharp", fov_circle=True,
                       noise_hu=(15.0, 30.0), covid=covid)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else 1.0


def evaluate_case(seed: int, covid: bool, work: Path) -> dict:
    from covidct.cli import main
    from covidct.io import read_nifti_array
    from covidct.io.nifti import write_nifti
    from covidct.synth import generate_case

    case = generate_case(seed, test_params(covid))
    ct_path = write_nifti(case.ct.hu, case.ct.affine, work / f"ct_{seed}.nii.gz", np.int16)
    out = work / f"out_{seed}"
    start = time.perf_counter()
    rc = main(["analyze", str(ct_path), "-o", str(out), "-q", "--no-report", "--overwrite"])
    seconds = time.perf_counter() - start
    if rc != 0:
        return {"seed": seed, "covid": covid, "error": f"exit code {rc}"}
    doc = json.loads((out / "result.json").read_text())
    found = read_nifti_array(out / "infection_mask.nii.gz")[0] > 0
    truth = np.asarray(case.infection) > 0
    return {
        "seed": seed, "covid": covid, "label": doc["decision"]["label"],
        "correct": doc["decision"]["label"] == ("covid-suspected" if covid else "not-suspected"),
        "ratio": doc["decision"]["positive_slice_ratio"],
        "true_infection_cm3": float(case.truth["infection_volume_cm3"]),
        "infection_cm3": doc["infection"]["volume_cm3"],
        "corona_score_cm3": doc["corona_score_cm3"],
        "percent_of_lung": doc["infection"]["percent_of_lung"],
        "dice": dice(found, truth) if covid else None,
        "shape": doc["input"]["shape"], "spacing_mm": doc["input"]["spacing_mm"],
        "seconds": round(seconds, 2),
    }


def summarise(rows: list[dict]) -> dict:
    from scipy.stats import spearmanr

    ok = [r for r in rows if "error" not in r]
    covid = [r for r in ok if r["covid"]]
    true = np.array([r["true_infection_cm3"] for r in covid])
    out = {"cases": len(rows), "errors": len(rows) - len(ok),
           "decision_accuracy": float(np.mean([r["correct"] for r in ok])) if ok else None,
           "sensitivity": float(np.mean([r["correct"] for r in covid])) if covid else None,
           "specificity": float(np.mean([r["correct"] for r in ok if not r["covid"]]))
           if any(not r["covid"] for r in ok) else None}
    if covid:
        out["dice_median"] = float(np.median([r["dice"] for r in covid]))
        out["dice_mean"] = float(np.mean([r["dice"] for r in covid]))
        for key in ("infection_cm3", "corona_score_cm3"):
            measured = np.array([r[key] for r in covid])
            rel = np.abs(measured - true) / np.maximum(true, 1e-6)
            out[f"{key}_median_relative_error"] = float(np.median(rel))
            out[f"{key}_median_signed_relative_error"] = float(
                np.median((measured - true) / np.maximum(true, 1e-6)))
            out[f"{key}_spearman"] = (float(spearmanr(measured, true).statistic)
                                      if len(covid) > 2 else None)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=16)
    parser.add_argument("--seed", type=int, default=770000, help="first case seed")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="covidct_acc_"))
    rows = []
    try:
        for i in range(args.cases):
            rows.append(evaluate_case(args.seed + i, covid=i % 2 == 0, work=work))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = summarise(rows)
    report = {"test_set": {"seeds": [args.seed, args.seed + args.cases - 1],
                           "params": repr(test_params(True)).replace("covid=True", "covid=alt")},
              "summary": summary, "cases": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "analyze_accuracy.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# analyze accuracy (fresh synthetic test set, shipped models)", "",
             f"seeds {args.seed}..{args.seed + args.cases - 1}, half COVID; "
             "384 matrix, 2-3 mm slices, sharp kernel, FOV circle, noise 15-30 HU", ""]
    lines += [f"- {k}: {round(v, 3) if isinstance(v, float) else v}" for k, v in summary.items()]
    (RESULTS / "analyze_accuracy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
