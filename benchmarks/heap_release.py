"""Resident memory before and after covidct.heap.release_free_heap, right after an analysis.

Runs covidct.analyze in this process on a series (default: analyze_speed's 300 x 512 x 512
synthetic DICOM, made when --series is not given), then reads VmRSS from /proc (Linux),
calls release_free_heap() (glibc malloc_trim(0)) as covidct.export.outputs does before
the exports, and reads it again. Also lists the result's arrays, the memory that must stay.

    .venv/bin/python benchmarks/heap_release.py [--series DIR]

Writes benchmarks/results/heap_release.txt.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import covidct
from covidct.heap import release_free_heap
from covidct.io import load_volume

RESULTS = Path(__file__).resolve().parent / "results"


def rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e9
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from analyze_speed import series_or_default
    series = series_or_default(args.series, "covidct_heap_")
    volume = load_volume(series)
    result = covidct.analyze(volume)
    arrays = {name: value.nbytes for name, value in vars(result).items()
              if isinstance(value, np.ndarray)}
    arrays["volume.hu"] = volume.hu.nbytes
    before = rss_gb()
    released = release_free_heap()
    after = rss_gb()
    lines = [f"# {time.strftime('%Y-%m-%d %H:%M')} nproc {os.cpu_count()}, "
             f"{platform.platform()}, Python {platform.python_version()}",
             f"series {series}: {volume.shape}",
             f"result arrays (kept for the exports): {sum(arrays.values()) / 1e9:.3f} GB "
             f"({', '.join(f'{k} {v / 1e6:.0f} MB' for k, v in arrays.items())})",
             f"RSS after the analysis: {before:.3f} GB",
             f"RSS after release_free_heap (released: {released}): {after:.3f} GB",
             f"heap returned: {before - after:.3f} GB"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "heap_release.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
