"""The shipped models on the held-out synthetic family, beside the training family (issue 11).

Two equal-size sets of synthetic chest CT, half COVID-19 (the same involved-lung fractions,
log-spaced 1 %-40 %) and half negative:

- held-out family (`covidct.heldout`, never seen in training): its own anatomy, lesion
  shape and texture (spherical-harmonic blobs: ground glass, crazy paving, consolidation
  with air bronchograms), noise and kernel models; the negatives spread over the
  confounders dependent density, atelectasis, effusion, nodules, emphysema, fibrosis;
- training family (`covidct.synth`, the generator the shipped weights learned; new seeds),
  its negatives with its own random findings.

Each set is evaluated by `covidct evaluate --data DIR` (slice AUC / sensitivity /
specificity at the model card's threshold, case accuracy, lung Dice) and every case is
analysed by `covidct analyze` (infection volume against the truth: median relative error
and Spearman over COVID cases; infection Dice). The gap is training minus held-out.

    nice -n 10 .venv/bin/python benchmarks/heldout_family.py [--cases 16] [--matrix 320]
        [--work DIR] [--reuse]

Writes benchmarks/results/heldout_family.{txt,json,png}. No threshold is tuned here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
NEGATIVE_SETS = (("dependent",), ("atelectasis",), ("effusion",), ("nodules",), ("emphysema",),
                 ("fibrosis",), ("effusion", "atelectasis"), ("dependent", "emphysema"))


def severities(n: int) -> list[float]:
    return [float(v) for v in np.geomspace(0.01, 0.4, n)]


def plan(cases: int) -> list[dict[str, Any]]:
    """Half COVID (severities), half negatives (confounder sets in turn)."""
    n_covid = cases // 2
    rows = [{"covid": True, "severity": s, "confounders": ()} for s in severities(n_covid)]
    rows += [{"covid": False, "severity": None,
              "confounders": NEGATIVE_SETS[i % len(NEGATIVE_SETS)]}
             for i in range(cases - n_covid)]
    return rows


def generate(family: str, rows: list[dict[str, Any]], out: Path, matrix: int, seed0: int,
             reuse: bool) -> list[dict[str, Any]]:
    from covidct.synth import SynthParams, generate_case, write_case

    if family == "heldout":
        from covidct.heldout import HeldoutParams, generate_heldout_case
    made = []
    for i, row in enumerate(rows):
        case_dir = out / f"case_{i:03d}"
        seed = seed0 + i
        started = time.perf_counter()
        if not (reuse and (case_dir / "truth.json").is_file()):
            if family == "heldout":
                case = generate_heldout_case(seed, HeldoutParams(
                    matrix=matrix, slice_mm=(2.5, 5.0), covid=row["covid"],
                    severity=row["severity"], confounders=row["confounders"]))
            else:
                case = generate_case(seed, SynthParams(
                    matrix=matrix, slice_mm=(2.5, 5.0), covid=row["covid"],
                    severity=row["severity"]))
            write_case(case, case_dir)
            print(f"{family} case_{i:03d}: generated in {time.perf_counter() - started:.1f} s",
                  file=sys.stderr, flush=True)
        truth = json.loads((case_dir / "truth.json").read_text())
        made.append({"case_id": case_dir.name, "seed": seed, "dir": str(case_dir),
                     "label": truth["label"], "severity": row["severity"],
                     "findings": truth.get("confounders", truth.get("findings", [])),
                     "true_infection_cm3": truth["infection_volume_cm3"],
                     "shape": truth["shape"], "spacing_mm": truth["spacing_mm"]})
    return made


def run_evaluate(data: Path, out_json: Path) -> dict[str, Any]:
    from covidct.cli import main

    code = main(["evaluate", "--data", str(data), "--layout", "synth", "--no-baseline",
                 "--json", str(out_json)])
    if code != 0:
        raise SystemExit(f"covidct evaluate failed on {data} (exit {code})")
    return json.loads(out_json.read_text())


def run_analyze(case: dict[str, Any], work: Path) -> dict[str, Any]:
    from covidct.cli import main
    from covidct.io import read_nifti_array

    out = work / f"analyze_{Path(case['dir']).parent.name}_{case['case_id']}"
    code = main(["analyze", str(Path(case["dir"]) / "ct.nii.gz"), "-o", str(out), "-q",
                 "--no-report", "--overwrite"])  # --reuse: this script's own earlier outputs
    if code != 0:
        return {"error": f"analyze exit code {code}"}
    doc = json.loads((out / "result.json").read_text())
    found = read_nifti_array(out / "infection_mask.nii.gz")[0] > 0
    truth = read_nifti_array(Path(case["dir"]) / "infection.nii.gz")[0] > 0
    total = int(found.sum()) + int(truth.sum())
    return {"infection_cm3": doc["infection"]["volume_cm3"],
            "corona_score_cm3": doc["corona_score_cm3"],
            "decision": doc["decision"]["label"],
            "infection_dice": 2.0 * int((found & truth).sum()) / total if total else None}


def family_figures(cases: list[dict[str, Any]], evaluation: dict[str, Any]) -> dict[str, Any]:
    from scipy.stats import spearmanr

    summary = evaluation["summary"]
    by_id = {c["case_id"]: c for c in evaluation["cases"]}
    negatives: dict[str, list[dict[str, Any]]] = {}
    for case in cases:
        ev = by_id[case["case_id"]]
        case.update(decision=ev["decision"], positive_slice_ratio=ev["positive_slice_ratio"],
                    lung_dice=ev["lung_dice"])
        if case["label"] == "negative":
            key = "+".join(case["findings"]) or "none"
            negatives.setdefault(key, []).append(case)
    covid = [c for c in cases if c["label"] == "covid" and c.get("infection_cm3") is not None]
    true = np.array([c["true_infection_cm3"] for c in covid])
    found = np.array([c["infection_cm3"] for c in covid])
    rel = np.abs(found - true) / np.maximum(true, 1e-6)
    dices = [c["infection_dice"] for c in covid if c.get("infection_dice") is not None]
    neg_cases = [c for c in cases if c["label"] == "negative"]
    return {
        "slice_auc": summary["slice"]["auc"],
        "slice_sensitivity": summary["slice"]["sensitivity"],
        "slice_specificity": summary["slice"]["specificity"],
        "slice_threshold": summary["slice"]["threshold"],
        "slices": summary["slice"]["slices"],
        "case_accuracy": summary["case"]["accuracy"],
        "case_sensitivity": summary["case"]["sensitivity"],
        "case_specificity": summary["case"]["specificity"],
        "case_auc_positive_ratio": summary["case"]["auc_positive_ratio"],
        "indeterminate": summary["case"]["indeterminate"],
        "lung_dice_mean": summary["lung"]["model_dice_mean"],
        "infection_volume_median_relative_error": float(np.median(rel)) if covid else None,
        "infection_volume_median_signed_relative_error": float(
            np.median((found - true) / np.maximum(true, 1e-6))) if covid else None,
        "infection_volume_spearman": float(spearmanr(found, true).statistic)
        if len(covid) > 2 else None,
        "infection_dice_median": float(np.median(dices)) if dices else None,
        "negative_infection_cm3_median": float(np.median(
            [c["infection_cm3"] for c in neg_cases if c.get("infection_cm3") is not None]))
        if neg_cases else None,
        "negatives_by_finding": {
            key: {"cases": len(group),
                  "correct": sum(c["decision"] == "not-suspected" for c in group),
                  "positive_slice_ratio": [c["positive_slice_ratio"] for c in group]}
            for key, group in sorted(negatives.items())},
    }


def _slice_to_show(case: dict[str, Any], hu: np.ndarray, lung: np.ndarray,
                   infection: np.ndarray) -> int:
    """COVID: the slice with most infection; negatives: the most dense (or, for emphysema,
    most lucent) lung, away from the domes."""
    if infection.any():
        return int(np.argmax(infection.sum(axis=(1, 2))))
    rows = np.nonzero(lung.any(axis=(1, 2)))[0]
    lo = rows.min() + int(0.12 * (rows.max() - rows.min()))
    hi = rows.max() - int(0.2 * (rows.max() - rows.min()))
    if "emphysema" in case["findings"]:
        score = ((hu < -950) & lung).sum(axis=(1, 2))
    else:
        score = ((hu > -600) & lung).sum(axis=(1, 2))
    score[:lo] = -1
    score[hi:] = -1
    return int(np.argmax(score))


def montage(held: list[dict[str, Any]], train: list[dict[str, Any]], path: Path,
            per_row: int = 8) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from covidct.io import read_nifti_array

    def pick(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
        covid = [c for c in cases if c["label"] == "covid"]
        neg = [c for c in cases if c["label"] == "negative"]
        chosen = covid[:: max(len(covid) // 3, 1)][-3:]
        return chosen + neg[: per_row - len(chosen)]

    rows = [("held-out", pick(held)), ("training", pick(train))]
    fig, axes = plt.subplots(2, per_row, figsize=(2.6 * per_row, 6.8))
    for r, (family, cases) in enumerate(rows):
        for c in range(per_row):
            ax = axes[r, c]
            ax.axis("off")
            if c >= len(cases):
                continue
            case = cases[c]
            folder = Path(case["dir"])
            hu = read_nifti_array(folder / "ct.nii.gz")[0]
            lung = read_nifti_array(folder / "lung.nii.gz")[0] > 0
            inf = read_nifti_array(folder / "infection.nii.gz")[0] > 0
            k = _slice_to_show(case, hu, lung, inf)
            ax.imshow(hu[k], cmap="gray", vmin=-1150, vmax=250, interpolation="lanczos")
            if inf[k].any():
                ax.contour(inf[k], [0.5], colors="red", linewidths=0.5)
            what = (f"COVID {case['true_infection_cm3']:.0f} cm3" if case["label"] == "covid"
                    else "neg: " + ("+".join(case["findings"]) or "none"))
            ax.set_title(f"{family} {case['case_id'][-3:]}\n{what}\n-> {case['decision']}",
                         fontsize=7)
    fig.suptitle("held-out family (top) vs training family (bottom); red: truth infection; "
                 "-> decision of the shipped models", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=16, help="cases per family")
    parser.add_argument("--matrix", type=int, default=320)
    parser.add_argument("--work", type=Path, default=Path("/tmp/covidct_heldout_family"))
    parser.add_argument("--reuse", action="store_true", help="keep cases already generated")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--montage-only", action="store_true",
                        help="redraw heldout_family.png from heldout_family.json and the "
                             "cases in --work")
    args = parser.parse_args()
    if args.montage_only:
        report = json.loads((args.out / "heldout_family.json").read_text())
        montage(report["families"]["heldout"]["cases"], report["families"]["training"]["cases"],
                args.out / "heldout_family.png")
        return 0
    started = time.perf_counter()
    rows = plan(args.cases)
    report: dict[str, Any] = {"cases_per_family": args.cases, "matrix": args.matrix,
                              "slice_mm": [2.5, 5.0], "families": {}}
    cases: dict[str, list[dict[str, Any]]] = {}
    for family, seed0 in (("heldout", 1_100_000), ("training", 2_200_000)):
        data = args.work / family
        cases[family] = generate(family, rows, data, args.matrix, seed0, args.reuse)
        evaluation = run_evaluate(data, args.work / f"evaluate_{family}.json")
        for case in cases[family]:
            print(f"analyze {family} {case['case_id']}", file=sys.stderr, flush=True)
            case.update(run_analyze(case, args.work))
        report["families"][family] = {"figures": family_figures(cases[family], evaluation),
                                      "cases": cases[family]}
    held = report["families"]["heldout"]["figures"]
    train = report["families"]["training"]["figures"]
    keys = ("slice_auc", "slice_sensitivity", "slice_specificity", "case_accuracy",
            "case_sensitivity", "case_specificity", "lung_dice_mean",
            "infection_volume_median_relative_error", "infection_volume_spearman",
            "infection_dice_median", "negative_infection_cm3_median")
    report["gap_training_minus_heldout"] = {
        k: (None if train[k] is None or held[k] is None else round(train[k] - held[k], 4))
        for k in keys}
    report["seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "heldout_family.json").write_text(json.dumps(report, indent=1) + "\n")
    montage(cases["heldout"], cases["training"], args.out / "heldout_family.png")
    lines = [f"held-out synthetic family vs training family: {args.cases} cases each "
             f"({args.cases // 2} COVID at 1-40 % of the lung, the rest negative), matrix "
             f"{args.matrix}, slices 2.5-5 mm, shipped models, thresholds from the model card",
             "command: nice -n 10 .venv/bin/python benchmarks/heldout_family.py "
             f"--cases {args.cases} --matrix {args.matrix}",
             "target (issue 11): held-out slice AUC >= 0.95, case accuracy >= 95 %", "",
             f"{'measure':42} {'training':>9} {'held-out':>9} {'gap':>8}"]

    def fmt(v: Any) -> str:
        return f"{v:9.3f}" if isinstance(v, float) else f"{'-':>9}"

    for k in keys:
        gap = report["gap_training_minus_heldout"][k]
        lines.append(f"{k:42} {fmt(train[k])} {fmt(held[k])} {fmt(gap)[1:]}")
    for family in ("heldout", "training"):
        lines += ["", f"{family} negatives by finding (correct = not-suspected):"]
        for key, g in report["families"][family]["figures"]["negatives_by_finding"].items():
            ratios = ", ".join(f"{r:.2f}" if r is not None else "-"
                               for r in g["positive_slice_ratio"])
            lines.append(f"  {key:28} {g['correct']}/{g['cases']} correct; positive-slice "
                         f"ratio {ratios}")
        lines.append(f"{family} cases (label, findings, true / measured infection cm3, "
                     "decision):")
        for c in report["families"][family]["cases"]:
            measured = c.get("infection_cm3")
            lines.append(f"  {c['case_id']} {c['label']:8} {'+'.join(c['findings']) or '-':22} "
                         f"{c['true_infection_cm3']:8.1f} "
                         f"{measured if measured is not None else float('nan'):8.1f} "
                         f"ratio {c['positive_slice_ratio'] or 0:.2f} {c['decision']}")
    lines.append(f"\ntotal {report['seconds']:.0f} s on this machine")
    (args.out / "heldout_family.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
