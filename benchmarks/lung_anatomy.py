"""Lung Dice of the lung stage's variants, real series first, then a synthetic corpus.

Variants, all from one network pass per case:
- network: the lung network with its 3D clean-up only (the lung stage before anatomy);
- hu-anatomy: HU evidence only (covidct.anatomy's lung air, airway removed, holes filled);
- fused: the shipped lung stage (covidct.lung.combine_with_anatomy);
- baseline: the plain HU-threshold baseline (covidct.train.baseline).

Real references: the CIP label map for COPDGene, tests/data/reference_masks for the rest
(labels 1 right, 2 left; 3 airway is not lung). Synthetic: the truth lung of each case of
--synthetic (e.g. the seed-2000 test corpus of benchmarks/train_default_models.sh).

    python benchmarks/lung_anatomy.py --synthetic /work/corpus/test \
        --out benchmarks/results/lung_anatomy.txt
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

import numpy as np

from covidct.anatomy import chest_anatomy
from covidct.io import load_volume, read_nifti_array
from covidct.lung import combine_with_anatomy, postprocess_lung_mask, predict_lung_labels
from covidct.models.registry import load_bundle
from covidct.models.runtime import input_antialias, use_bf16
from covidct.train.baseline import threshold_lungs
from covidct.train.masks import align_to_grid
from covidct.train.metrics import dice

HERE = Path(__file__).resolve().parent
REFS = HERE.parent / "tests" / "data" / "reference_masks"
REAL = [  # (name, image relative to the data root, reference)
    ("cip-copdgene-10002K", "cip-copdgene-10002K/ct-64.nrrd",
     "cip-copdgene-10002K/cip_10002K_lm64_1right_2left_3airway.nii.gz"),
    ("covid-ct-md_P001", "covid-ct-md/P001", REFS / "covid-ct-md_P001.nii.gz"),
    ("covid-ct-md_normal001", "covid-ct-md/normal001", REFS / "covid-ct-md_normal001.nii.gz"),
    ("lidc-idri-0001", "lidc-idri-0001/LIDC-IDRI-0001.nii.gz", REFS / "lidc-idri-0001.nii.gz"),
    ("lidc-idri-0003", "lidc-idri-0003/LIDC-IDRI-0003.nii.gz", REFS / "lidc-idri-0003.nii.gz"),
    ("totalsegmentator-ct_cropped", "totalsegmentator-examples/ct_cropped.nii.gz",
     REFS / "totalsegmentator-ct_cropped.nii.gz"),
]
VARIANTS = ("network", "hu-anatomy", "fused", "baseline")


def variants(volume, bundle) -> dict[str, np.ndarray]:
    module = bundle.lung.module
    net = predict_lung_labels(volume.hu, module, bf16=use_bf16("auto"),
                              antialias=input_antialias(bundle.lung))
    anatomy = chest_anatomy(volume.hu, volume.spacing_mm)
    return {
        "network": postprocess_lung_mask(net),
        "hu-anatomy": combine_with_anatomy(volume.hu, np.zeros_like(net), anatomy,
                                           volume.spacing_mm)[0],
        "fused": combine_with_anatomy(volume.hu, net, anatomy, volume.spacing_mm)[0],
        "baseline": threshold_lungs(volume),
    }


def row(name: str, masks: dict[str, np.ndarray], truth: np.ndarray, extra: str = "") -> str:
    values = [dice(masks[v] > 0, truth) for v in VARIANTS]
    return f"{name:32} " + " ".join(f"{x:10.4f}" for x in values) + f"  {extra}"


def run_header() -> str:
    """The first line of a result file: date, CPUs and the git revision measured."""
    revision = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=HERE,
                              capture_output=True, text=True).stdout.strip()
    return f"# {time.strftime('%Y-%m-%d %H:%M')} nproc {os.cpu_count()} revision {revision}"


def reference_lung(data: Path, ref: Path | str, volume) -> np.ndarray:
    """A reference label map (1 right, 2 left, 3 airway) as the lung mask on volume's grid;
    `ref` is a path, or relative to the data root."""
    labels, affine = read_nifti_array(ref if isinstance(ref, Path) else data / ref)
    return np.isin(align_to_grid(labels, affine, volume.affine, volume.shape), (1, 2))


def reference_cases(data: Path, synthetic: Path | None):
    """(name, volume, true lung mask, group) of every real series with a reference, then of
    each synthetic case; group is 'real', 'infected' or 'clean'."""
    for name, image, ref in REAL:
        volume = load_volume(data / image)
        yield name, volume, reference_lung(data, ref, volume), "real"
    if synthetic is not None:
        from covidct.train.datasets import discover_cases, load_case

        for record in discover_cases(synthetic, "auto"):
            case = load_case(record)
            infected = case.infection is not None and bool(case.infection.any())
            yield record.case_id, case.volume, case.lung > 0, "infected" if infected else "clean"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data"
                        / "real")
    parser.add_argument("--synthetic", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    bundle = load_bundle(None)
    lines = [run_header(), f"{'case':32} " + " ".join(f"{v:>10}" for v in VARIANTS)]
    print("\n".join(lines), flush=True)
    scores: dict[str, dict[str, list[float]]] = {"infected": {}, "clean": {}}
    for name, volume, truth, group in reference_cases(args.data, args.synthetic):
        masks = variants(volume, bundle)
        if group != "real":
            for v in VARIANTS:
                scores[group].setdefault(v, []).append(dice(masks[v] > 0, truth))
        lines.append(row(name, masks, truth, group))
        print(lines[-1], flush=True)
    for group, values in scores.items():
        if values:
            lines.append(f"{'synthetic mean, ' + group:32} " + " ".join(
                f"{np.mean(values[v]):10.4f}" for v in VARIANTS)
                + f"  {len(values['fused'])} cases")
            print(lines[-1], flush=True)
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
