"""`covidct evaluate --data DIR`: the models' metrics on a labelled dataset.

Lung Dice (model and HU-threshold baseline), slice AUC / sensitivity / specificity at the
model card's slice threshold, case AUC and decision accuracy. Thresholds come from the
model card (calibrated on validation by `covidct train`), never from the evaluated data.

Single-case lung Dice, e.g. on the real COPDGene scan in data/real:
    covidct evaluate --image cip-copdgene-10002K/ct-64.nrrd \
        --lung-labels cip-copdgene-10002K/cip_10002K_lm64_1right_2left_3airway.nii.gz
(labels 1 right, 2 left; 3 = airway is excluded).

Real studies listed in a manifest (format: `covidct.train.real_studies`):
    covidct evaluate --manifest benchmarks/real_manifest.json [--root DIR] [--only NAME]
prints one row per study (decision vs expected: ok / MISMATCH, lung Dice of the model and
the HU baseline, slice AUC / sensitivity / specificity), the overall lines and the decision
reasons. It exits 0 when decisions mismatch (it is a report), 1 when a study failed to run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from covidct.errors import ConfigError

HELP = "evaluate the models on a labelled dataset (lung Dice, slice and case metrics)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, help="dataset folder")
    parser.add_argument("--layout", default="auto",
                        help="dataset layout: auto, synth, nifti-pairs, medseg, covid19-ct-seg, "
                             "mosmed, csv (default: auto)")
    parser.add_argument("--models", type=Path, default=None,
                        help="folder of model weights and cards (default: the shipped ones)")
    parser.add_argument("--json", type=Path, default=None, help="write full results here")
    parser.add_argument("--plots", type=Path, default=None,
                        help="write roc.png and baseline_worst_cases.png into this folder")
    parser.add_argument("--slice-threshold", type=float, default=None,
                        help="override the model card's slice threshold (validation-chosen)")
    parser.add_argument("--case-threshold", type=float, default=None,
                        help="override the model card's case threshold (validation-chosen)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the HU-threshold lung baseline")
    parser.add_argument("--no-localization", action="store_true",
                        help="skip the full analysis with Grad-CAM and lesions: no "
                             "localization measures (lesion Dice, infection volume and Corona "
                             "score against the reference infection mask), and the slice "
                             "figures are the classifier's alone (no GGO evidence)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N cases")
    parser.add_argument("--image", type=Path, default=None,
                        help="single-case lung Dice mode: a CT image (with --lung-labels)")
    parser.add_argument("--lung-labels", type=Path, default=None,
                        help="lung label map of --image (1 right, 2 left; others ignored)")
    parser.add_argument("--manifest", type=Path, default=None,
                        help="real-study mode: a JSON manifest of studies with expected "
                             "decisions, slice labels and reference masks")
    parser.add_argument("--root", type=Path, default=None,
                        help="data root the manifest's relative paths resolve against "
                             "(default: $COVIDCT_REAL_DATA, else the manifest's 'root')")
    parser.add_argument("--only", action="append", default=None, metavar="NAME",
                        help="evaluate only this manifest study (repeatable)")


def _thresholds(args: argparse.Namespace, spec: Any) -> tuple[float, float]:
    out = []
    for name in ("slice_threshold", "case_threshold"):
        value = getattr(args, name)
        value = value if value is not None else getattr(spec, name, None)
        if value is None:
            raise ConfigError(f"The classifier's model card has no calibrated {name}; retrain "
                              f"with `covidct train` or pass --{name.replace('_', '-')}.")
        if not 0.0 <= float(value) <= 1.0:
            raise ConfigError(f"{name} must be in [0, 1]; got {value}.")
        out.append(float(value))
    return out[0], out[1]


def run(args: argparse.Namespace) -> int:
    from covidct.models.registry import load_bundle

    if args.manifest is not None:
        if args.data is not None or args.image is not None or args.lung_labels is not None:
            raise ConfigError("--manifest cannot be combined with --data, --image or "
                              "--lung-labels; run them separately.")
        return _run_manifest(args, load_bundle)
    if args.root is not None or args.only:
        raise ConfigError("--root and --only apply to --manifest; add --manifest FILE.")
    if args.image is not None or args.lung_labels is not None:
        if args.image is None or args.lung_labels is None:
            raise ConfigError("Single-case mode needs both --image and --lung-labels.")
        return _run_single(args, load_bundle(args.models))
    if args.data is None:
        raise ConfigError("Give --data DIR (a dataset) or --image and --lung-labels.")
    from covidct.train.datasets import discover_cases
    from covidct.train.evaluate import evaluate_records, summarize

    records = discover_cases(args.data, args.layout)
    if args.limit is not None:
        records = records[: args.limit]
    bundle = load_bundle(args.models)
    slice_t, case_t = _thresholds(args, bundle.classifier.spec)

    def progress(case_id: str) -> None:
        print(f"evaluating {case_id}", file=sys.stderr)

    cases = evaluate_records(bundle, records, slice_t, case_t, baseline=not args.no_baseline,
                             localization=not args.no_localization, progress=progress)
    summary = summarize(cases, slice_t, case_t)
    for line in table_lines(cases, summary):
        print(line)
    doc = {"data": str(args.data), "layout": records[0].layout if records else args.layout,
           "models": {"lung": getattr(bundle.lung, "sha256", None),
                      "classifier": getattr(bundle.classifier, "sha256", None)},
           "summary": summary, "cases": [c.to_dict() for c in cases]}
    if args.plots is not None:
        from covidct.train.plots import baseline_worst_cases, roc_plot

        doc["plots"] = [str(roc_plot(summary, args.plots / "roc.png"))]
        worst = baseline_worst_cases(cases, args.plots / "baseline_worst_cases.png")
        if worst is not None:
            doc["plots"].append(str(worst))
        print(f"plots: {args.plots}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2))
        print(f"json: {args.json}")
    return 0


def _run_manifest(args: argparse.Namespace, load_bundle: Any) -> int:
    from covidct.train.real_studies import (
        evaluate_manifest,
        load_manifest,
        report_dict,
        table_lines,
    )

    # The root: --root, else $COVIDCT_REAL_DATA, else the manifest's own (load_manifest).
    manifest = load_manifest(args.manifest, args.root).select(args.only)
    bundle = load_bundle(args.models)

    def progress(name: str) -> None:
        print(f"evaluating {name}", file=sys.stderr)

    studies = evaluate_manifest(manifest, bundle, progress=progress)
    doc = report_dict(manifest, studies, bundle)
    print(f"manifest: {manifest.path} (data root {manifest.root})")
    for line in table_lines(studies, doc["summary"]):
        print(line)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2))
        print(f"json: {args.json}")
    return 1 if doc["summary"]["errors"] else 0


def _run_single(args: argparse.Namespace, bundle: Any) -> int:
    from covidct.train.evaluate import evaluate_lung_file

    result = evaluate_lung_file(bundle, args.image, args.lung_labels)
    print(f"{'':10} {'Dice':>7} {'right':>7} {'left':>7}")
    for name in ("model", "baseline"):
        r = result[name]
        print(f"{name:10} {_fmt(r['dice'])} {_fmt(r['dice_right'])} {_fmt(r['dice_left'])}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"json: {args.json}")
    return 0


def _fmt(value: float | None, width: int = 7) -> str:
    return f"{value:{width}.3f}" if value is not None else f"{'-':>{width}}"


def table_lines(cases: list[Any], summary: dict[str, Any]) -> list[str]:
    """The stdout table: one row per case, then the pooled metrics."""
    lines = [f"{'case':24} {'label':9} {'lungDice':>8} {'baseDice':>8} {'ratio':>7} decision"]
    for c in cases:
        d = c.decision
        lines.append(f"{c.case_id[:24]:24} {str(c.label or '-'):9} {_fmt(c.lung_dice, 8)} "
                     f"{_fmt(c.baseline_dice, 8)} {_fmt(d.positive_slice_ratio)} {d.label}")
    lung, sl, cs = summary["lung"], summary["slice"], summary["case"]
    lines += [
        "",
        f"lung Dice mean: model {_fmt(lung['model_dice_mean']).strip()}, HU baseline "
        f"{_fmt(lung['baseline_dice_mean']).strip()} (infected "
        f"{_fmt(lung['baseline_dice_infected_mean']).strip()}, clean "
        f"{_fmt(lung['baseline_dice_clean_mean']).strip()}); {lung['cases']} cases",
        f"slices: AUC {_fmt(sl['auc']).strip()}, sensitivity {_fmt(sl['sensitivity']).strip()}, "
        f"specificity {_fmt(sl['specificity']).strip()} at p >= {sl['threshold']:.3f} "
        f"({sl['positive_slices']}/{sl['slices']} positive)",
        f"cases: AUC {_fmt(cs['auc_positive_ratio']).strip()}, accuracy "
        f"{_fmt(cs['accuracy']).strip()}, sensitivity {_fmt(cs['sensitivity']).strip()}, "
        f"specificity {_fmt(cs['specificity']).strip()} at ratio > {cs['threshold']:.3f} "
        f"({cs['cases_decided']}/{cs['cases_labelled']} decided, "
        f"{cs['indeterminate']} indeterminate)",
    ]
    loc = summary.get("localization")
    if loc and loc.get("cases_with_infection"):
        lines.append(
            f"localization ({loc['cases_with_infection']} cases with infection): lesion Dice "
            f"median {_fmt(loc['lesion_dice_median']).strip()}, infection volume median "
            f"relative error {_fmt(loc['infection_volume_median_relative_error']).strip()} "
            f"(signed {_fmt(loc['infection_volume_median_signed_relative_error']).strip()}), "
            f"Spearman {_fmt(loc['infection_volume_spearman']).strip()}; Corona score "
            f"Spearman {_fmt(loc['corona_score_spearman']).strip()}")
    if loc and loc.get("cases_without"):
        lines.append(f"infection found in cases without: at most "
                     f"{_fmt(loc['max_infection_cm3_without']).strip()} cm3 "
                     f"({loc['cases_without']} cases)")
    return lines
