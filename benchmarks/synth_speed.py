"""Time the synthetic chest-CT generator: one 512 x 512 x 300 case must take <= 30 s.

    .venv/bin/python benchmarks/synth_speed.py [--repeats 2] [--out benchmarks/results]

Single process; also times a thick-slice case and write_case (NIfTI). Writes
synth_speed.txt.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from covidct.synth import SynthParams, generate_case, write_case


def _time(seed: int, params: SynthParams) -> tuple[float, object]:
    started = time.perf_counter()
    case = generate_case(seed, params)
    return time.perf_counter() - started, case


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    setups = [
        ("512x512x300, 1 mm slices, COVID", SynthParams(slice_mm=1.0, n_slices=300, covid=True)),
        ("512x512x300, 1 mm slices, negative + findings",
         SynthParams(slice_mm=1.0, n_slices=300, covid=False,
                     finding_list=("nodule", "emphysema", "effusion", "atelectasis"))),
        ("512x512, 5 mm slices (default z extent)", SynthParams(slice_mm=5.0, covid=True)),
    ]
    lines = [f"covidct synth speed, single process, {platform.processor() or platform.machine()}"
             f", {os.cpu_count()} CPUs visible (shared machine), numpy {np.__version__}"]
    for name, params in setups:
        times = []
        for r in range(args.repeats):
            seconds, case = _time(1000 + r, params)
            times.append(seconds)
        lines.append(f"{name:48s} shape {case.ct.shape}: " + ", ".join(f"{t:.1f}" for t in times)
                     + f" s (best {min(times):.1f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        write_case(case, Path(tmp) / "case")
        seconds = time.perf_counter() - started
        lines.append(f"write_case (NIfTI .nii.gz, last case): {seconds:.1f} s")
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "synth_speed.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
