"""Pick between lung models on validation cases: 3D lung Dice through `covidct.lung`.

Each model runs the inference path (`segment_lungs`: network, resize to the slice grid, 3D
post-processing) on every case named by the candidate's model card (`val_case_ids`: the
validation split of its training run, never the test corpus) and is scored against the
reference lung masks: mean Dice over all, clean and infected cases.

    .venv/bin/python benchmarks/lung_model_selection.py --data DIR \
        --candidate DIR/lung-NAME.json --incumbent DIR/lung-NAME.json \
        [--extra DIR ...] [--out FILE]

`--extra DIR` (repeatable): every case of a further corpus that neither model trained on
(e.g. a calibration corpus with other scanner parameters), summarised separately.

Note: the incumbent may have trained on some of these cases (another split of other data);
that favours the incumbent, so a candidate that still scores higher is better.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from covidct.lung import segment_lungs
from covidct.models.registry import load_model, read_card
from covidct.train.datasets import discover_cases, load_case
from covidct.train.metrics import dice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--candidate", type=Path, required=True, help="model card (.json)")
    parser.add_argument("--incumbent", type=Path, required=True, help="model card (.json)")
    parser.add_argument("--extra", type=Path, action="append", default=[],
                        help="a corpus neither model trained on (repeatable)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    specs = {"candidate": read_card(args.candidate), "incumbent": read_card(args.incumbent)}
    models = {k: load_model(spec, args.candidate.parent if k == "candidate"
                            else args.incumbent.parent) for k, spec in specs.items()}
    wanted = set(specs["candidate"].training["val_case_ids"])
    records = [r for r in discover_cases(args.data) if r.case_id in wanted]
    for extra in args.extra:
        records += [replace(r, case_id=f"{extra.name}/{r.case_id}")
                    for r in discover_cases(extra)]
    lines = [f"# {os.cpu_count()} CPUs; {len(records)} validation cases of "
             f"{specs['candidate'].name} ({args.candidate}) from {args.data}",
             f"# incumbent: {args.incumbent} ({models['incumbent'].sha256[:12]}); candidate "
             f"{models['candidate'].sha256[:12]}", "case infected candidate incumbent"]
    scores: dict[str, list[tuple[str, bool, float]]] = {k: [] for k in models}
    started = time.perf_counter()
    for record in records:
        case = load_case(record)
        infected = case.infection is not None and bool(np.any(case.infection))
        row = [record.case_id, str(infected)]
        for key, model in models.items():
            value = dice(segment_lungs(case.volume, model), case.lung)
            scores[key].append((record.case_id, infected, value))
            row.append(f"{value:.4f}")
        lines.append(" ".join(row))
        print(lines[-1], flush=True)
    groups = {"validation split": lambda c: "/" not in c}
    for extra in args.extra:
        groups[f"{extra.name} (extra)"] = lambda c, name=extra.name: c.startswith(f"{name}/")
    if args.extra:
        groups["all"] = lambda c: True
    n_summary = 0
    for group, member in groups.items():
        for key, values in scores.items():
            picked = [(i, v) for c, i, v in values if member(c)]
            if not picked:
                continue
            arr = np.array([v for _, v in picked])
            inf = np.array([i for i, _ in picked])
            summary = {"cases": int(arr.size), "mean": round(float(arr.mean()), 4),
                       "clean": round(float(arr[~inf].mean()), 4) if (~inf).any() else None,
                       "infected": round(float(arr[inf].mean()), 4) if inf.any() else None,
                       "min": round(float(arr.min()), 4)}
            lines.append(f"{group}: {key}: {json.dumps(summary)}")
            n_summary += 1
    lines.append(f"# {time.perf_counter() - started:.0f} s")
    print("\n".join(lines[-n_summary - 1:]))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
