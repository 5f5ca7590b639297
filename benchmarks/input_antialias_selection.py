"""Choose how inputs are shrunk to 224 (plain bilinear vs antialiased), on validation data.

For each variant the models' cards get `input_antialias` set (plain: neither model; lung:
the lung model only; both), and `covidct evaluate` runs on each corpus given (calibration
or validation corpora, never a test corpus). Prints and writes one summary line per
(corpus, variant): lung Dice (all / clean / infected), slice AUC, case AUC and accuracy at
the cards' thresholds.

    .venv/bin/python benchmarks/input_antialias_selection.py --models DIR \
        --data DIR [DIR ...] [--variants plain lung both] [--out FILE] [--json-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from covidct import cli
from covidct.models.registry import list_specs, write_card

VARIANTS = {"plain": set(), "lung": {"lung"}, "both": {"lung", "classifier"}}


def models_with(models: Path, tasks: set[str], into: Path) -> Path:
    """Copies of the models in `models` into `into`, antialiasing the inputs of `tasks`."""
    into.mkdir(parents=True, exist_ok=True)
    for spec in list_specs(models):
        shutil.copy(models / spec.weights_file, into / spec.weights_file)
        write_card(replace(spec, input_antialias=spec.task in tasks), into / f"{spec.name}.json")
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--data", type=Path, nargs="+", required=True)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--json-dir", type=Path, help="keep each evaluation's JSON here")
    args = parser.parse_args()
    lines = [f"# {os.cpu_count()} CPUs; models {args.models}",
             "corpus variant lung_dice clean infected slice_auc case_auc case_accuracy"]
    with tempfile.TemporaryDirectory() as tmp:
        for data in args.data:
            for variant in args.variants:
                folder = models_with(args.models, VARIANTS[variant], Path(tmp) / variant)
                out = (args.json_dir or Path(tmp)) / f"antialias_{data.name}_{variant}.json"
                out.parent.mkdir(parents=True, exist_ok=True)
                started = time.perf_counter()
                cli.main(["evaluate", "--data", str(data), "--models", str(folder),
                          "--no-baseline", "--json", str(out)])
                s = json.loads(out.read_text())["summary"]
                lung, case = s["lung"], s["case"]
                lines.append(f"{data.name} {variant} {lung['model_dice_mean']} "
                             f"{lung['model_dice_clean_mean']} {lung['model_dice_infected_mean']} "
                             f"{s['slice']['auc']} {case['auc_positive_ratio']} "
                             f"{case['accuracy']}  # {time.perf_counter() - started:.0f} s")
                print(lines[-1], flush=True)
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
