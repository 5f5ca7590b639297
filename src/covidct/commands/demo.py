"""`covidct demo [-o OUT]`: a synthetic COVID-19 chest CT with known truth, analysed."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from covidct.errors import InputError

HELP = "generate a synthetic COVID-19 chest CT (fixed seed) and analyse it like `analyze`"
DEMO_SEED = 2020
DEMO_MARKER = "demo.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, default=Path("demo_out"),
                        help="output folder (default: demo_out)")
    parser.add_argument("--seed", type=int, default=DEMO_SEED, help="synthetic case seed")
    parser.add_argument("--matrix", type=int, default=256,
                        help="in-plane pixels of the synthetic CT (default 256: quick)")
    parser.add_argument("--models", type=Path, metavar="DIR",
                        help="folder of model weights + cards (default: the shipped models)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _check_output(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"The output {out} exists and is not a folder; choose a folder.")
    if out.is_dir() and any(out.iterdir()) and not (out / DEMO_MARKER).is_file():
        raise InputError(f"The output folder {out} is not empty and holds no earlier demo; "
                         "choose a new folder (e.g. -o demo_out).")


def write_demo_case(seed: int, matrix: int, case_dir: Path) -> tuple[Path, dict[str, Any]]:
    """Generate the case and write it (DICOM when the writer is available, else NIfTI).
    Returns (the input to analyse, the truth)."""
    from covidct.synth import SynthParams, generate_case

    params = SynthParams(matrix=matrix, covid=True, slice_mm=2.5, severity=0.12,
                         findings=False)
    case = generate_case(seed, params)
    try:
        from covidct.synth import write_case

        write_case(case, case_dir, dicom=True)
        target = case_dir / "dicom"
        if not target.is_dir():
            target = case_dir / "ct.nii.gz"
    except ImportError:
        from covidct.io.nifti import write_nifti

        case_dir.mkdir(parents=True, exist_ok=True)
        target = write_nifti(case.ct.hu, case.ct.affine, case_dir / "ct.nii.gz", dtype="int16")
        write_nifti(case.infection, case.ct.affine, case_dir / "infection.nii.gz", dtype="uint8")
        (case_dir / "truth.json").write_text(json.dumps(case.truth, indent=2, default=str))
    return target, dict(case.truth)


def infection_dice(case_dir: Path, analysis_dir: Path) -> float | None:
    """Dice of the measured and the true infection masks (both on the input grid)."""
    from covidct.io import read_nifti_array

    truth_path = case_dir / "infection.nii.gz"
    if not truth_path.is_file():
        return None
    truth = read_nifti_array(truth_path)[0] > 0
    found = read_nifti_array(analysis_dir / "infection_mask.nii.gz")[0] > 0
    if truth.shape != found.shape:
        return None
    total = int(truth.sum()) + int(found.sum())
    return 2.0 * int((truth & found).sum()) / total if total else 1.0


def run(args: argparse.Namespace) -> int:
    from covidct.commands.analyze import analyze_to_folder, summary_lines
    from covidct.config import AnalysisConfig

    out: Path = args.output
    _check_output(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / DEMO_MARKER).write_text(json.dumps({"seed": args.seed, "matrix": args.matrix}) + "\n")
    case_dir, analysis_dir = out / "input", out / "analysis"
    if not args.quiet:
        print(f"generating a synthetic COVID-19 chest CT (seed {args.seed}) in {case_dir} ...")
    target, truth = write_demo_case(args.seed, args.matrix, case_dir)
    doc = analyze_to_folder(target, analysis_dir, AnalysisConfig(), models_dir=args.models,
                            quiet=args.quiet, overwrite=True)
    print("\n".join(summary_lines(doc, analysis_dir)))
    true_cm3 = float(truth.get("infection_volume_cm3", float("nan")))
    measured = doc["infection"]["volume_cm3"]
    print(f"truth: {truth.get('label')}, infection {true_cm3:.1f} cm3 | measured: "
          f"{doc['decision']['label']}, infection {measured:.1f} cm3, "
          f"Corona score {doc['corona_score_cm3']:.1f} cm3")
    dice = infection_dice(case_dir, analysis_dir)
    if dice is not None:
        print(f"infection mask Dice against the truth: {dice:.2f}")
    return 0
