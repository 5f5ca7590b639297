"""Write measured figures into the shipped model cards (the weights and sha256 stay as they
are): the real validation series (benchmarks/evaluate_real.py's JSON) and the synthetic
test corpus (`covidct evaluate --data TEST --json`).

    python benchmarks/card_metrics.py benchmarks/results/evaluate_real.json \
        benchmarks/results/evaluate_test/eval_test.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from covidct.models.registry import default_weights_dir, list_specs, write_card


def real_figures(doc: dict, task: str) -> dict:
    """Per study: lung Dice for the lung card; decision and slice metrics for the classifier."""
    keep = (("lung_dice", "baseline_dice", "airway_dice", "role") if task == "lung" else
            ("expected", "decision", "matches_expected", "positive_slice_ratio", "slices",
             "role"))
    studies = {}
    for study in doc.get("studies", []):
        row = {k: study[k] for k in keep if study.get(k) is not None}
        if isinstance(row.get("slices"), dict):  # the metrics, not the per-slice lists
            row["slices"] = {k: v for k, v in row["slices"].items() if not isinstance(v, list)}
        studies[study["name"]] = row
    return {"command": "python benchmarks/evaluate_real.py", "date": doc.get("date"),
            "source": "benchmarks/results/evaluate_real.json", "studies": studies,
            "summary": doc.get("summary")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("real", type=Path)
    parser.add_argument("synthetic_test", type=Path)
    args = parser.parse_args()
    real = json.loads(args.real.read_text())
    test = json.loads(args.synthetic_test.read_text())
    folder = default_weights_dir()
    for spec in list_specs(folder):
        keys = ("lung",) if spec.task == "lung" else ("slice", "case")
        extra = {"real_validation": real_figures(real, spec.task),
                 "test_synth_seed2000": {"command": "covidct evaluate --data TEST --json OUT",
                                         **{k: test["summary"][k] for k in keys}}}
        write_card(replace(spec, metrics=spec.metrics | extra), folder / f"{spec.name}.json")
        print(spec.name, "card updated")


if __name__ == "__main__":
    main()
