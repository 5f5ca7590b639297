"""What the antialiased input resize costs: plain vs antialiased shrink to 224, same run.

The lung model's input of a 300-slice 512x512 study (every slice, batches of 16, as
`covidct.lung` does) through `preprocess.lung_model_input` with and without `antialias`;
the best of 5 alternating repeats of each, and the ratio. The classifier shrinks smaller
ROI crops of the lung slices only, so its share is below this.

    .venv/bin/python benchmarks/input_resize_speed.py [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from covidct.preprocess import lung_model_input

SLICES, MATRIX, BATCH, REPEATS = 300, 512, 16, 5


def shrink_all(hu: np.ndarray, antialias: bool) -> float:
    start = time.perf_counter()
    for first in range(0, hu.shape[0], BATCH):
        lung_model_input(hu[first:first + BATCH], antialias=antialias)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    hu = rng.normal(-700.0, 100.0, (SLICES, MATRIX, MATRIX)).astype(np.float32)
    best = {False: float("inf"), True: float("inf")}
    for _ in range(REPEATS):  # alternate, so both see the same machine load
        for antialias in best:
            best[antialias] = min(best[antialias], shrink_all(hu, antialias))
    lines = [f"# {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; {SLICES} x {MATRIX}^2 "
             f"-> 224^2, batches of {BATCH}, best of {REPEATS}",
             f"plain bilinear: {best[False]:.3f} s",
             f"antialiased:    {best[True]:.3f} s",
             f"antialiased / plain: {best[True] / best[False]:.2f}; extra "
             f"{best[True] - best[False]:.3f} s per study"]
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
