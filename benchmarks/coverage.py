"""Chest coverage on the real series and a synthetic corpus: the data behind the coverage
rules of covidct.decision (MIN_LUNG_EXTENT_MM, MIN_LUNG_VOLUME_CM3,
MAX_FOV_CUT_SHARE).

For each series: the lung stage's lung volume, its craniocaudal extent, the share of lung
slices whose lung touches the image edge, and whether the rules would call it
indeterminate for coverage.

    python benchmarks/coverage.py --synthetic /work/corpus/test \
        --out benchmarks/results/coverage.txt
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from covidct.classify import lung_slice_flags
from covidct.coverage import chest_coverage
from covidct.decision import MAX_FOV_CUT_SHARE, MIN_LUNG_EXTENT_MM, MIN_LUNG_VOLUME_CM3
from covidct.io import load_volume
from covidct.lung import segment_chest
from covidct.models.registry import load_bundle
from covidct.train.real_studies import load_manifest

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "real_manifest.json"  # the real series, as evaluate_real.py uses them


def line(name: str, volume, bundle) -> str:
    lung = segment_chest(volume, bundle.lung).lung
    has_lung = lung_slice_flags(lung, volume.spacing_mm)
    cov = chest_coverage(lung, has_lung, volume.slice_positions_mm(), volume.voxel_volume_mm3)
    short = (cov.lung_extent_mm < MIN_LUNG_EXTENT_MM
             or cov.lung_volume_cm3 < MIN_LUNG_VOLUME_CM3
             or cov.fov_cut_share >= MAX_FOV_CUT_SHARE)
    return (f"{name:46} {volume.shape[0]:5d} {cov.lung_volume_cm3:9.0f} "
            f"{cov.lung_extent_mm:9.0f} {cov.fov_cut_share:8.2f} "
            f"{'indeterminate' if short else 'decidable':>14}"
            + (f"  {cov.warnings[0][:60]}" if cov.warnings else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None,
                        help="data root of the manifest's paths (default: the manifest's)")
    parser.add_argument("--synthetic", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    bundle = load_bundle(None)
    lines = [f"# {time.strftime('%Y-%m-%d %H:%M')} nproc {os.cpu_count()}; rules: extent >= "
             f"{MIN_LUNG_EXTENT_MM:.0f} mm, lung >= {MIN_LUNG_VOLUME_CM3:.0f} cm3, lung on the "
             f"image edge on < {MAX_FOV_CUT_SHARE:.0%} of lung slices",
             f"{'series':46} {'slices':>5} {'lung_cm3':>9} {'extent_mm':>9} {'fov_cut':>8} "
             f"{'coverage':>14}"]
    print("\n".join(lines), flush=True)
    studies = load_manifest(MANIFEST, args.root).studies
    names = [(s.name, lambda s=s: load_volume(s.path)) for s in studies]
    if args.synthetic is not None:
        from covidct.train.datasets import discover_cases, load_case

        names += [(f"synthetic {r.case_id}", lambda r=r: load_case(r).volume)
                  for r in discover_cases(args.synthetic, "auto")]
    for name, load in names:
        lines.append(line(name, load(), bundle))
        print(lines[-1], flush=True)
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
