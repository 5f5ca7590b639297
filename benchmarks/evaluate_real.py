"""The analysis on the real public CT series of shared/data/real, against a manifest.

    .venv/bin/python benchmarks/evaluate_real.py \
        [--manifest benchmarks/real_manifest.json] [--root DIR] [--only NAME ...] \
        [--models DIR] [--out benchmarks/results]

Writes <out>/evaluate_real.txt (date, machine, git revision, then the table that
`covidct evaluate --manifest` prints) and <out>/evaluate_real.json (the full report,
with the same header). Per study: the decision vs the manifest's expected one, lung Dice of
the model and of the HU-threshold baseline against the reference masks, slice AUC /
sensitivity / specificity on the radiologists' slice labels (slices without predicted lung
count with p = 0), and the time taken. A few minutes on 2 cores (the three COVID-CT-MD
series are ~150 slices of 512x512 each).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

from covidct.models.registry import load_bundle
from covidct.train.real_studies import (
    evaluate_manifest,
    load_manifest,
    report_dict,
    table_lines,
)

HERE = Path(__file__).resolve().parent


def git_revision() -> str:
    """`git describe --always --dirty` of the checkout, or 'unknown' outside git."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"],
                              cwd=HERE, capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=HERE / "real_manifest.json")
    parser.add_argument("--root", type=Path, default=None,
                        help="data root (default: $COVIDCT_REAL_DATA, else the manifest's)")
    parser.add_argument("--only", action="append", default=None, metavar="NAME")
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    manifest = load_manifest(args.manifest, args.root).select(args.only)
    bundle = load_bundle(args.models)
    studies = evaluate_manifest(
        manifest, bundle, progress=lambda name: print(f"evaluating {name}", file=sys.stderr))
    doc = report_dict(manifest, studies, bundle)
    header = {
        "date": started,
        "machine": {"nproc": os.cpu_count(), "sched_cpus": len(os.sched_getaffinity(0)),
                    "torch_threads": torch.get_num_threads(),
                    "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "torch": torch.__version__},
        "git_revision": git_revision(),
        "command": "benchmarks/evaluate_real.py " + " ".join(argv or sys.argv[1:]),
    }
    m = header["machine"]
    lines = [
        "# covidct evaluate --manifest: real public CT series",
        f"date: {header['date']}",
        f"machine: nproc {m['sched_cpus']} (of {m['nproc']}), torch threads "
        f"{m['torch_threads']}, {m['processor']}, Python {m['python']}, torch {m['torch']}",
        f"git revision: {header['git_revision']}",
        f"manifest: {manifest.path} (data root {manifest.root})",
        f"models: lung {doc['models']['lung']['name']} "
        f"({(doc['models']['lung']['sha256'] or '')[:12]}), classifier "
        f"{doc['models']['classifier']['name']} "
        f"({(doc['models']['classifier']['sha256'] or '')[:12]})",
        "",
        *table_lines(studies, doc["summary"]),
    ]
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "evaluate_real.txt").write_text(text)
    (args.out / "evaluate_real.json").write_text(json.dumps({**header, **doc}, indent=2))
    print(text)
    print(f"wrote {args.out / 'evaluate_real.txt'} and {args.out / 'evaluate_real.json'}")
    return 1 if doc["summary"]["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
