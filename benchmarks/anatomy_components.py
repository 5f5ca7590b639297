"""The air components covidct.anatomy finds in each real series, with their measures and
verdicts: the data behind its thresholds (gas share, size, skin margin).

    python benchmarks/anatomy_components.py --out benchmarks/results/anatomy_components.txt
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from covidct.anatomy import chest_anatomy
from covidct.io import load_volume
from covidct.train.real_studies import load_manifest

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "real_manifest.json"  # the real series, as evaluate_real.py uses them


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None,
                        help="data root of the manifest's paths (default: the manifest's)")
    parser.add_argument("--top", type=int, default=6, help="largest components per series")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    lines = [f"# {time.strftime('%Y-%m-%d %H:%M')}; per series the largest air components "
             "inside the body (volume cm3, share of voxels < -950 HU, share > 8 mm inside "
             "the skin, z range of slices, verdict)"]
    for study in load_manifest(MANIFEST, args.root).studies:
        volume = load_volume(study.path)
        anatomy = chest_anatomy(volume.hu, volume.spacing_mm)
        voxel_cm3 = float(np.prod(anatomy.grid.spacing_mm)) / 1000.0
        airway_cm3 = float(anatomy.airway.sum()) * voxel_cm3
        lines.append(f"{study.name}  {volume.shape}  airway {airway_cm3:.1f} cm3")
        for row in sorted(anatomy.components, key=lambda r: -r["volume_cm3"])[: args.top]:
            lines.append(f"    {row['volume_cm3']:9.1f} cm3  gas {row['gas_share']:.2f}  "
                         f"deep {row['deep_share']:.2f}  z {row['z_first']}-{row['z_last']}  "
                         f"{'lung' if row['lung'] else 'not lung'}")
        print("\n".join(lines[-1 - min(args.top, len(anatomy.components)):]), flush=True)
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
