"""DICOM SEG construction time by pixel-array memory layout (same run, same masks).

highdicom checks a 4D (frames, rows, columns, segments) pixel array for overlapping
segments by summing over the segment axis. covidct.export.dicom_seg stores the masks
segment-major, (segments, frames, rows, columns), and passes a moved-axis view; the
alternative is a contiguous (frames, rows, columns, segments) array. Both are timed
building the same hd.seg.Segmentation from the same source CT headers and masks (HU
thresholds of the series' own CT: air, lung-like, GGO-like, dense; six segments, as
covidct writes), alternating, best of --repeat.

    .venv/bin/python benchmarks/seg_layout_speed.py [--series DIR] [--repeat 2]

Default series: a 300 x 512 x 512 synthetic DICOM series (benchmarks/analyze_speed.py's).
Writes benchmarks/results/seg_layout_speed.txt.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes

from covidct.io import load_volume
from covidct.io.dicom_source import read_source_datasets, source_stack

RESULTS = Path(__file__).resolve().parent / "results"


def masks_of(series: Path) -> tuple[list, list[np.ndarray]]:
    """(source datasets, six (k, rows, cols) bool masks in source order)."""
    stack = source_stack(read_source_datasets(series))
    hu = load_volume(series).hu
    bands = [hu < -900, (hu >= -900) & (hu < -400), hu < -950, (hu >= -750) & (hu < -300),
             (hu >= -750) & (hu < -500), (hu >= -300) & (hu < 0)]
    return list(stack.datasets), [stack.to_source(b) for b in bands]


def build(datasets: list, pixels: np.ndarray) -> float:
    descriptions = [hd.seg.SegmentDescription(
        segment_number=n + 1, segment_label=f"segment {n + 1}",
        segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.Tissue,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL) for n in range(pixels.shape[-1])]
    start = time.perf_counter()
    hd.seg.Segmentation(
        source_images=datasets, pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=90,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="bench",
        manufacturer_model_name="bench", software_versions="0", device_serial_number="0",
        omit_empty_frames=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=Path)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from analyze_speed import series_or_default
    series = series_or_default(args.series, "covidct_seg_")
    datasets, masks = masks_of(series)
    planes = np.stack([m.astype(np.uint8) for m in masks])           # segment-major
    layouts = {"contiguous (k, rows, cols, segment)": np.ascontiguousarray(
                   np.moveaxis(planes, 0, -1)),
               "segment-major view (shipped)": np.moveaxis(planes, 0, -1)}
    times: dict[str, list[float]] = {name: [] for name in layouts}
    for _ in range(args.repeat):
        for name, pixels in layouts.items():
            times[name].append(build(datasets, pixels))
    best = {name: min(t) for name, t in times.items()}
    base = best["contiguous (k, rows, cols, segment)"]
    shipped = best["segment-major view (shipped)"]
    lines = [f"# {time.strftime('%Y-%m-%d %H:%M')} nproc {os.cpu_count()} "
             f"load {os.getloadavg()[0]:.2f}, highdicom {hd.__version__}",
             f"series {series}: {len(datasets)} images of {planes.shape[2]}x{planes.shape[3]}, "
             f"{planes.shape[0]} segments, best of {args.repeat}"]
    lines += [f"{name:38} {t:6.2f} s  (runs: {', '.join(f'{x:.2f}' for x in times[name])})"
              for name, t in best.items()]
    lines.append(f"contiguous / segment-major: {base / shipped:.2f}")
    (RESULTS / "seg_layout_speed.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
