"""`covidct synth OUT`: generate a synthetic chest-CT corpus (NIfTI + truth, optional DICOM)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

HELP = "generate synthetic chest CT cases with lung and COVID-19 lesion masks"

logger = logging.getLogger(__name__)


def _range(values: list[float] | None) -> float | tuple[float, float] | None:
    if not values:
        return None
    if len(values) == 1:
        return float(values[0])
    if len(values) == 2:
        low, high = sorted(float(v) for v in values)
        return (low, high) if high > low else low
    from covidct.errors import ConfigError

    raise ConfigError(f"Give one value or a range LOW HIGH; got {values}.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="output folder (case_000/, case_001/, ...)")
    parser.add_argument("--cases", type=int, default=1, help="number of cases (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    parser.add_argument("--start", type=int, default=0,
                        help="index of the first case (to extend a corpus)")
    parser.add_argument("--matrix", type=int, default=512, help="in-plane matrix (default 512)")
    parser.add_argument("--pixel-mm", type=float, nargs="+", metavar="MM",
                        help="pixel spacing, a value or LOW HIGH (default: fit the patient, "
                             "0.55-0.9)")
    parser.add_argument("--slice-mm", type=float, nargs="+", metavar="MM",
                        help="slice thickness = spacing, a value or LOW HIGH (default 1-5)")
    parser.add_argument("--n-slices", type=int, help="fixed number of slices")
    parser.add_argument("--covid-fraction", type=float, default=0.5,
                        help="share of COVID-19 cases (default 0.5)")
    parser.add_argument("--severity", type=float, nargs="+", metavar="F",
                        help="involved lung fraction of COVID cases, a value or LOW HIGH")
    parser.add_argument("--noise-hu", type=float, nargs="+", metavar="HU",
                        help="noise SD in HU, a value or LOW HIGH")
    parser.add_argument("--kernel", choices=("soft", "standard", "sharp"))
    parser.add_argument("--no-findings", action="store_true",
                        help="no non-COVID findings (nodule, emphysema, effusion, atelectasis)")
    parser.add_argument("--dicom", action="store_true", help="also write a DICOM series")
    parser.add_argument("--quirks", nargs="*", default=None, metavar="NAME[=VALUE]",
                        help="DICOM writer quirks (DicomQuirks fields), e.g. shuffle_files "
                             "rescale_intercept=-1024")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--insert-into", type=Path, action="append", metavar="CT",
                        help="insert COVID-19 lesions into this real CT (NIfTI, NRRD, MHA or "
                             "DICOM) instead of generating phantoms; repeatable. --cases is "
                             "then the number of cases per CT, --severity their range "
                             "(default 0.005 0.5, drawn log-uniformly)")
    parser.add_argument("--lung-mask", type=Path, action="append", metavar="M",
                        help="lung mask of the matching --insert-into CT (in order; labels > 0 "
                             "lung, 1 right, 2 left, 3 airway = not lung); default: HU "
                             "threshold lungs")
    parser.add_argument("--include-negatives", action="store_true",
                        help="with --insert-into: also write each untouched CT as a negative")
    parser.add_argument("--family", choices=("training", "heldout"), default="training",
                        help="appearance family: 'training' (the generator the shipped models "
                             "were trained on) or 'heldout' (covidct.heldout: other anatomy, "
                             "lesion, confounder, noise and kernel models, for testing only; "
                             "takes --cases --seed --start --matrix --slice-mm "
                             "--covid-fraction --severity --noise-hu --confounders --workers)")
    parser.add_argument("--confounders", nargs="+", metavar="NAME", default=None,
                        help="with --family heldout: the non-COVID findings of every case "
                             "(dependent atelectasis effusion nodules emphysema fibrosis; "
                             "default: drawn per case)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _quirks(items: list[str] | None) -> Any:
    if items is None:
        return None
    from covidct.errors import ConfigError

    try:
        from covidct.synth.dicom_writer import DicomQuirks
    except ImportError as exc:
        raise ConfigError(f"--quirks needs covidct.synth.dicom_writer ({exc}).") from exc
    kwargs: dict[str, Any] = {}
    for item in items:
        name, _, value = item.partition("=")
        name = name.replace("-", "_")
        if not value:
            kwargs[name] = True
            continue
        for cast in (int, float):
            try:
                kwargs[name] = cast(value)
                break
            except ValueError:
                continue
        else:
            kwargs[name] = {"true": True, "false": False}.get(value.lower(), value)
    try:
        return DicomQuirks(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"Unknown DICOM quirk in {items}: {exc}") from exc


def _one(job: tuple[int, int, Any, Path, bool, Any]) -> dict[str, Any]:
    from covidct.synth import generate_case, write_case

    index, seed, params, out, dicom, quirks = job
    case = generate_case(seed, params)
    case_dir = write_case(case, out / f"case_{index:03d}", dicom=dicom, quirks=quirks)
    return {"index": index, "seed": seed, "dir": str(case_dir), "label": case.truth["label"],
            "infection_volume_cm3": case.truth["infection_volume_cm3"]}


def run(args: argparse.Namespace) -> int:
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    from covidct.errors import ConfigError
    from covidct.synth import SynthParams, case_seed

    if args.cases < 1:
        raise ConfigError(f"--cases must be >= 1; got {args.cases}.")
    if args.family == "heldout":
        return _run_heldout(args)
    if args.confounders:
        raise ConfigError("--confounders goes with --family heldout; add it or drop them.")
    if args.insert_into:
        return _run_insert(args)
    if args.lung_mask or args.include_negatives:
        raise ConfigError("--lung-mask and --include-negatives go with --insert-into CT; "
                          "add --insert-into or drop them.")
    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1; got {args.workers}.")
    params = SynthParams(
        matrix=args.matrix, pixel_mm=_range(args.pixel_mm), slice_mm=_range(args.slice_mm),
        n_slices=args.n_slices, covid_fraction=args.covid_fraction,
        severity=_range(args.severity), noise_hu=_range(args.noise_hu), kernel=args.kernel,
        findings=not args.no_findings,
    )
    quirks = _quirks(args.quirks)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(i, case_seed(args.seed, i), params, out, args.dicom, quirks)
            for i in range(args.start, args.start + args.cases)]
    show = not args.quiet and sys.stderr.isatty()
    bar = tqdm(total=len(jobs), unit="case", disable=not show, desc="covidct synth")
    results = []
    if args.workers == 1:
        for job in jobs:
            results.append(_one(job))
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            for result in pool.map(_one, jobs):
                results.append(result)
                bar.update()
    bar.close()
    _write_manifest(out, args, {"seed": args.seed, "params": repr(params)}, results, "covid")
    return 0


def _one_heldout(job: tuple[int, int, Any, Path]) -> dict[str, Any]:
    from covidct.heldout import generate_heldout_case
    from covidct.synth import write_case

    index, seed, params, out = job
    case = generate_heldout_case(seed, params)
    case_dir = write_case(case, out / f"case_{index:03d}")
    return {"index": index, "seed": seed, "dir": str(case_dir), "label": case.truth["label"],
            "confounders": case.truth["confounders"],
            "infection_volume_cm3": case.truth["infection_volume_cm3"]}


def _run_heldout(args: argparse.Namespace) -> int:
    """`covidct synth OUT --family heldout`: the held-out appearance family (testing only)."""
    from concurrent.futures import ProcessPoolExecutor

    from covidct.errors import ConfigError
    from covidct.heldout import HeldoutParams
    from covidct.synth import case_seed

    unsupported = [flag for flag, used in (
        ("--insert-into", args.insert_into), ("--lung-mask", args.lung_mask),
        ("--include-negatives", args.include_negatives), ("--pixel-mm", args.pixel_mm),
        ("--n-slices", args.n_slices), ("--kernel", args.kernel),
        ("--no-findings", args.no_findings), ("--dicom", args.dicom),
        ("--quirks", args.quirks is not None)) if used]
    if unsupported:
        raise ConfigError(f"{', '.join(unsupported)} do not apply to --family heldout (its "
                          "pixel size fits the patient, its kernels and findings are its "
                          "own); drop them or use --family training.")
    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1; got {args.workers}.")
    params = HeldoutParams(
        matrix=args.matrix, slice_mm=_range(args.slice_mm), covid_fraction=args.covid_fraction,
        severity=_range(args.severity), noise_hu=_range(args.noise_hu),
        confounders=tuple(args.confounders) if args.confounders else None)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(i, case_seed(args.seed, i), params, out)
            for i in range(args.start, args.start + args.cases)]
    if args.workers == 1:
        results = [_one_heldout(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            results = list(pool.map(_one_heldout, jobs))
    _write_manifest(out, args, {"seed": args.seed, "family": "heldout",
                                "params": repr(params)}, results, "covid")
    return 0


def _run_insert(args: argparse.Namespace) -> int:
    """`covidct synth --insert-into CT ... OUT`: lesions inserted into real CT, synth layout.

    Case folders OUT/case_XXX/ hold ct.nii.gz (int16 HU, the input's affine), lung.nii.gz
    (1 right, 2 left), infection.nii.gz (0 none, 1 GGO, 2 consolidation) and truth.json,
    as `covidct synth` writes them, so `covidct train ... --data OUT` reads them unchanged.
    """

    import numpy as np

    from covidct.errors import ConfigError
    from covidct.io import load_volume
    from covidct.synth import SynthCase, case_seed, write_case
    from covidct.synth.insert import InsertionParams, insert_lesions, inserted_truth, lung_sides

    inputs: list[Path] = list(args.insert_into)
    masks: list[Path] = list(args.lung_mask or [])
    if masks and len(masks) != len(inputs):
        raise ConfigError(f"Give one --lung-mask per --insert-into CT (paired in order); got "
                          f"{len(inputs)} CT and {len(masks)} masks.")
    severity = _range(args.severity)
    low, high = (0.005, 0.5) if severity is None else (
        severity if isinstance(severity, tuple) else (severity, severity))
    if not 0.0 < low <= high < 1.0:
        raise ConfigError(f"--severity is the involved lung fraction, in (0, 1); got "
                          f"{args.severity}. E.g. --severity 0.01 0.4.")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    index = args.start
    results = []
    for n_input, ct_path in enumerate(inputs):
        volume = load_volume(ct_path)
        if masks:
            from covidct.train.volumes import read_label_map

            lung = lung_sides(read_label_map(masks[n_input], volume, name="lung mask"), volume)
        else:
            from covidct.train.baseline import threshold_lungs

            lung = threshold_lungs(volume)
        for _ in range(args.cases):
            seed = case_seed(args.seed, index)
            rng = np.random.default_rng(seed)
            drawn = float(np.exp(rng.uniform(np.log(low), np.log(high))))
            case = insert_lesions(volume, lung, rng, InsertionParams(severity=drawn))
            truth = inserted_truth(case.volume, lung, case, str(ct_path), seed)
            case_dir = write_case(SynthCase(ct=case.volume, lung=lung, infection=case.mask,
                                            truth=truth), out / f"case_{index:03d}")
            results.append({"index": index, "seed": seed, "dir": str(case_dir),
                            "source": str(ct_path), "label": truth["label"],
                            "severity_target": drawn,
                            "infection_volume_cm3": truth["infection_volume_cm3"]})
            index += 1
        if args.include_negatives:
            truth = inserted_truth(volume, lung, None, str(ct_path), None)
            case_dir = write_case(SynthCase(ct=volume, lung=lung,
                                            infection=np.zeros(lung.shape, np.uint8),
                                            truth=truth), out / f"case_{index:03d}")
            results.append({"index": index, "seed": None, "dir": str(case_dir),
                            "source": str(ct_path), "label": "negative",
                            "infection_volume_cm3": 0.0})
            index += 1
    _write_manifest(out, args, {"seed": args.seed, "mode": "insert", "severity": [low, high],
                                "inputs": [str(p) for p in inputs],
                                "lung_masks": [str(p) for p in masks]},
                    results, "with inserted lesions")
    return 0


def _write_manifest(out: Path, args: argparse.Namespace, header: dict[str, Any],
                    results: list[dict[str, Any]], positive_word: str) -> None:
    """OUT/manifest.json (manifest_NNN.json for a --start run) and the one-line summary."""
    name = "manifest.json" if args.start == 0 else f"manifest_{args.start:03d}.json"
    (out / name).write_text(json.dumps({**header, "cases": results}, indent=1))
    if not args.quiet:
        positives = sum(r["label"] == "covid" for r in results)
        print(f"wrote {len(results)} cases ({positives} {positive_word}) to {out}")
