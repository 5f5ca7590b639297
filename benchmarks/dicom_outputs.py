"""DICOM outputs on a real CT series: time, size, dciodvfy verdict and SEG round trip.

Analyses a real DICOM chest CT with the shipped models (covidct.analyze), then times
``write_dicom_outputs`` (SEG, SR, secondary captures), records the file sizes, runs
``dciodvfy`` (Debian dicom3tools) on each object and counts its Error / Warning lines, and
reads the SEG back with highdicom: every source image's lung frames must equal the
analysis's lung mask at that slice.

    PYTHONPATH=src .venv/bin/python benchmarks/dicom_outputs.py [SERIES_DIR ...]

Default series: COVID-CT-MD P001 and normal001 (../shared/data/real/covid-ct-md; validation
only, nothing is trained here). Writes benchmarks/results/dicom_outputs.txt.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
if not REAL.is_dir():
    REAL = Path("/work/shared/data/real")
DEFAULT = [REAL / "covid-ct-md" / "P001", REAL / "covid-ct-md" / "normal001"]


def dciodvfy(path: Path) -> tuple[int, int]:
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=300)
    lines = (run.stdout + run.stderr).splitlines()
    return (sum(line.startswith("Error") for line in lines),
            sum(line.startswith("Warning") for line in lines))


def one(series: Path, bundle) -> list[str]:
    import highdicom as hd

    import covidct
    from covidct.export.dicom_objects import write_dicom_outputs
    from covidct.export.dicom_seg import SEGMENTS
    from covidct.io.dicom_source import read_source_datasets, source_stack

    volume = covidct.load_volume(series)
    t0 = time.perf_counter()
    result = covidct.analyze(volume, models=bundle)
    analysis_s = time.perf_counter() - t0
    sources = read_source_datasets(series)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        paths = write_dicom_outputs(result, sources, out)
        write_s = time.perf_counter() - t0
        lines = [f"series {series.relative_to(REAL)}: shape {volume.shape}, spacing_mm "
                 f"{tuple(round(s, 3) for s in volume.spacing_mm)}, decision "
                 f"{result.decision.label}, analysis {analysis_s:.1f} s",
                 f"  write_dicom_outputs: {write_s:.2f} s for {len(paths)} files"]
        for path in paths:
            errors, warnings = dciodvfy(path)
            lines.append(f"  {path.relative_to(out)}: {path.stat().st_size / 1e6:.2f} MB, "
                         f"dciodvfy {errors} error(s), {warnings} warning(s)")
        seg = hd.seg.segread(paths[0])
        stack = source_stack(sources, volume.metadata["series_uid"])
        lung_src = stack.to_source(result.lung_mask)
        uids = [ds.SOPInstanceUID for ds in stack.datasets]
        pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=[1, 2])
        equal = all(np.array_equal(pixels[k, ..., 0] > 0, lung_src[k] == 1)
                    and np.array_equal(pixels[k, ..., 1] > 0, lung_src[k] == 2)
                    for k in range(len(uids)))
        lines.append(f"  SEG read back: {int(seg.NumberOfFrames)} frames "
                     f"({len(uids)} source images x {len(SEGMENTS)} segments); lung frames "
                     f"equal the lung mask on every source image: {equal}")
    return lines


def main(argv: list[str]) -> int:
    from covidct.models.registry import load_bundle

    series = [Path(a) for a in argv] or DEFAULT
    bundle = load_bundle()
    lines = ["DICOM outputs on real series (benchmarks/dicom_outputs.py)", ""]
    for s in series:
        lines += one(s, bundle)
        print("\n".join(lines[-6:]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dicom_outputs.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
