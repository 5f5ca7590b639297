"""Organ gas kept out of the lung (covidct.gut_gas): every solid body of pure gas in the lung
air of each real series and each synthetic case, with the share of soft tissue in the ring
around it and the verdict, and the lung volume the lung stage measures with and without the
rule (one network pass per case).

    .venv/bin/python benchmarks/gut_gas.py [--synthetic /work/corpus/test]

Writes benchmarks/results/gut_gas.txt.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from covidct.anatomy import GAS_HU, chest_anatomy
from covidct.gut_gas import gas_bodies
from covidct.io import load_volume
from covidct.lung import combine_with_anatomy, predict_lung_labels
from covidct.models.registry import load_bundle
from covidct.models.runtime import input_antialias, use_bf16

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lung_anatomy import HERE, run_header  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SERIES = {  # every real series at hand with lung bases or abdomen in the field of view
    "covid-ct-md_cap001": "covid-ct-md/cap001",
    "covid-ct-md_P001": "covid-ct-md/P001",
    "covid-ct-md_normal001": "covid-ct-md/normal001",
    "cip-copdgene-10002K": "cip-copdgene-10002K/ct-64.nrrd",
    "lidc-idri-0001": "lidc-idri-0001/LIDC-IDRI-0001.nii.gz",
    "lidc-idri-0003": "lidc-idri-0003/LIDC-IDRI-0003.nii.gz",
    "totalsegmentator-ct_cropped": "totalsegmentator-examples/ct_cropped.nii.gz",
    "totalsegmentator-example_ct": "totalsegmentator-examples/example_ct.nii.gz",
    "totalsegmentator-siemens": "totalsegmentator-siemens-dicom/example_ct_dicom",
}


def measure(name: str, volume, bundle) -> list[str]:
    net = predict_lung_labels(volume.hu, bundle.lung.module, bf16=use_bf16("auto"),
                              antialias=input_antialias(bundle.lung))
    anatomy = chest_anatomy(volume.hu, volume.spacing_mm)
    grid = anatomy.grid
    pooled = grid.pool(volume.hu)
    bodies = gas_bodies(pooled, anatomy.lung_air | anatomy.gut, anatomy.airway, grid.spacing_mm,
                        gas_hu=GAS_HU)
    without = replace(anatomy, lung_air=anatomy.lung_air | anatomy.gut,
                      gut=np.zeros_like(anatomy.gut))
    cm3 = float(np.prod(volume.spacing_mm)) / 1000.0
    lung = np.count_nonzero(combine_with_anatomy(volume.hu, net, anatomy,
                                                 volume.spacing_mm)[0]) * cm3
    before = np.count_nonzero(combine_with_anatomy(volume.hu, net, without,
                                                   volume.spacing_mm)[0]) * cm3
    gut_cm3 = np.count_nonzero(anatomy.gut) * float(np.prod(grid.spacing_mm)) / 1000.0
    lines = [f"{name:30} lung without the rule {before:8.1f} -> with it {lung:8.1f} cm3 "
             f"({lung - before:+.1f}); organ gas {gut_cm3:.1f} cm3"]
    for b in bodies:
        lines.append(f"    gas body {b['volume_cm3']:7.1f} cm3, slices {b['z_first']}-"
                     f"{b['z_last']} of {volume.shape[0]}, ring soft tissue "
                     f"{b['ring_soft']:.2f}, top at {b['top_share']:.2f} of the lung's extent "
                     f"-> {'organ gas' if b['organ'] else 'lung'}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data"
                        / "real", help="the real data root")
    parser.add_argument("--synthetic", type=Path, help="a synthetic corpus (covidct synth)")
    args = parser.parse_args()
    bundle = load_bundle(None)
    lines = [run_header(), "real series"]
    for name, path in SERIES.items():
        lines += measure(name, load_volume(args.data / path), bundle)
        print(lines[-1], flush=True)
    if args.synthetic is not None:
        from covidct.train.datasets import discover_cases, load_case

        lines.append("synthetic corpus " + str(args.synthetic))
        for record in discover_cases(args.synthetic, "auto"):
            lines += measure(record.case_id, load_case(record).volume, bundle)
            print(lines[-1], flush=True)
    (RESULTS / "gut_gas.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
