"""Diaphragm domes (covidct.diaphragm) on the real series: what the rule takes out of the
lung mask, its lung Dice, and the infection volume the lesion stage measures there.

For each real series, one network pass and one analysis (covidct.analyze, shipped
settings: its heatmap and positive slices); then the lung mask with and without the dome
rule (covidct.lung.combine_with_anatomy(exclude_domes=...)) and the HU lesion stage
(covidct.lesions.segment_lesions) on each mask with that same heatmap and those positive
slices. Columns: lung volume removed by the rule; lung Dice against the reference with
and without it; the reference's own dome volume (the reference masks fill holes slice by
slice too, benchmarks/reference_masks.py, so they hold the domes); infection cm3 without
and with it. Real COVID-19 (P001) and pneumonia (cap001) have true lesions; the rest are
negatives, where every cm3 of infection is a false positive.

    python benchmarks/lung_domes.py --out benchmarks/results/lung_domes.txt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import covidct
from covidct.anatomy import chest_anatomy
from covidct.diaphragm import dome_holes
from covidct.io import load_volume
from covidct.lesions import segment_lesions
from covidct.lung import combine_with_anatomy, fill_holes_per_slice, predict_lung_labels
from covidct.models.registry import load_bundle
from covidct.models.runtime import input_antialias, use_bf16
from covidct.train.metrics import dice
from lung_anatomy import REAL, reference_lung, run_header

HERE = Path(__file__).resolve().parent
# lung_anatomy's real series with a reference, cap001 (none) added; in this order
REFERENCES = {name: (image, ref) for name, image, ref in REAL}
REFERENCES["covid-ct-md_cap001"] = ("covid-ct-md/cap001", None)
SERIES = ["covid-ct-md_P001", "covid-ct-md_cap001", "covid-ct-md_normal001", "lidc-idri-0001",
          "lidc-idri-0003", "cip-copdgene-10002K"]


def reference_domes(reference: np.ndarray, hu: np.ndarray, spacing: tuple[float, ...]
                    ) -> np.ndarray:
    """The dome holes of a reference mask's aerated part (as the rule would see them)."""
    aerated = reference & (hu < -400)
    holes = fill_holes_per_slice(aerated) & ~aerated
    return dome_holes(holes, aerated, hu, spacing) & reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=HERE.parent.parent / "shared" / "data" / "real")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    bundle = load_bundle(None)
    lines = [run_header(),
             f"{'series':24} {'removed cm3':>11} {'Dice before':>11} {'Dice after':>10} "
             f"{'ref domes cm3':>13} {'infection before':>16} {'after cm3':>9}"]
    print("\n".join(lines), flush=True)
    for name in SERIES:
        image, ref = REFERENCES[name]
        volume = load_volume(args.data / image)
        hu, spacing = volume.hu, volume.spacing_mm
        result = covidct.analyze(volume, bundle)
        net = predict_lung_labels(hu, bundle.lung.module, bf16=use_bf16("auto"),
                                  antialias=input_antialias(bundle.lung))
        anatomy = chest_anatomy(hu, spacing)
        masks = {flag: combine_with_anatomy(hu, net, anatomy, spacing, exclude_domes=flag)[0]
                 for flag in (False, True)}
        voxel_cm3 = float(np.prod(spacing)) / 1000.0
        removed = ((masks[False] > 0) & (masks[True] == 0)).sum() * voxel_cm3
        infection = {}
        for flag, mask in masks.items():
            lesions = segment_lesions(hu, mask, result.airway_mask, result.heatmap,
                                      result.positive, volume.affine, spacing)
            infection[flag] = (lesions.labels > 0).sum() * voxel_cm3
        dice_cols = f"{'-':>11} {'-':>10} {'-':>13}"
        if ref is not None:
            truth = reference_lung(args.data, ref, volume)
            ref_domes = reference_domes(truth, hu, spacing).sum() * voxel_cm3
            dice_cols = (f"{dice(masks[False] > 0, truth):11.4f} "
                         f"{dice(masks[True] > 0, truth):10.4f} {ref_domes:13.1f}")
        lines.append(f"{name:24} {removed:11.1f} {dice_cols} {infection[False]:16.1f} "
                     f"{infection[True]:9.1f}")
        print(lines[-1], flush=True)
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
