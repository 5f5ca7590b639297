"""Lung Dice when the network's dense lung may lie a margin outside the aerated lung's hull.

The lung stage keeps the network's lung beyond the aerated lung only inside the 3D convex
hull of that side's aerated lung (covidct.lung.combine_with_anatomy, HULL_MARGIN_MM = 0).
On the synthetic corpus the hull cuts off dense posterior lung (fully consolidated lower
lobes); this measures whether growing the hull helps, on the real reference masks and the
synthetic test corpus (same cases as benchmarks/lung_anatomy.py). Two steps: the network's
labels are computed once per case into --cache (the slow part), then the variants.

    python benchmarks/lung_hull_margin.py --synthetic /work/corpus/test --cache /tmp/hull \
        --margins 0 5 10 20 > benchmarks/results/lung_hull_margin.txt
    python benchmarks/lung_hull_margin.py ... --posterior  # grow only posterior facets
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import covidct.lung as lung_mod
from covidct.anatomy import chest_anatomy
from covidct.io import load_volume, read_nifti_array
from covidct.lung import combine_with_anatomy, predict_lung_labels
from covidct.models.registry import load_bundle
from covidct.models.runtime import input_antialias, use_bf16
from covidct.train.masks import align_to_grid
from covidct.train.metrics import dice

HERE = Path(__file__).resolve().parent


def build_cache(data: Path, synthetic: Path | None, cache: Path) -> None:
    from covidct.train.datasets import discover_cases, load_case
    from lung_anatomy import REAL  # same real series and references

    cache.mkdir(parents=True, exist_ok=True)
    bundle = load_bundle(None)

    def net_of(volume):
        return predict_lung_labels(volume.hu, bundle.lung.module, bf16=use_bf16("auto"),
                                   antialias=input_antialias(bundle.lung))

    for name, image, ref in REAL:
        path = cache / f"{name}.npz"
        if not path.exists():
            volume = load_volume(data / image)
            labels, affine = read_nifti_array(ref if isinstance(ref, Path) else data / ref)
            truth = np.isin(align_to_grid(labels, affine, volume.affine, volume.shape), (1, 2))
            np.savez(path, hu=volume.hu, net=net_of(volume), spacing=np.array(volume.spacing_mm),
                     truth=truth, infected=False)
    if synthetic is not None:
        for record in discover_cases(synthetic, "auto"):
            path = cache / f"{record.case_id}.npz"
            if not path.exists():
                case = load_case(record)
                infected = case.infection is not None and bool(case.infection.any())
                np.savez(path, hu=case.volume.hu, net=net_of(case.volume),
                         spacing=np.array(case.volume.spacing_mm), truth=case.lung > 0,
                         infected=infected)


def posterior_only(spans):
    """_hull_row_spans with the margin on posterior-facing facets only (+y: posterior in
    these arrays)."""
    def patched(equations, rows_mm, margin_mm, chunk=4096):
        grown = equations.copy()
        grown[:, 3] -= np.where(equations[:, 1] > 0.3, margin_mm, 0.0)
        return spans(grown, rows_mm, 0.0, chunk)
    return patched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data" / "real")
    parser.add_argument("--synthetic", type=Path, default=None)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--margins", type=float, nargs="+", default=[0.0, 5.0, 10.0, 20.0])
    parser.add_argument("--posterior", action="store_true")
    args = parser.parse_args()
    build_cache(args.data, args.synthetic, args.cache)
    if args.posterior:
        lung_mod._hull_row_spans = posterior_only(lung_mod._hull_row_spans)
    print(f"hull margins (mm): {args.margins}{' posterior facets only' if args.posterior else ''}")
    groups: dict[str, list[list[float]]] = {}
    for path in sorted(args.cache.glob("*.npz")):
        d = np.load(path)
        hu, net, truth = d["hu"], d["net"], d["truth"] > 0
        spacing = tuple(float(s) for s in d["spacing"])
        anatomy = chest_anatomy(hu, spacing)
        values = [dice(combine_with_anatomy(hu, net, anatomy, spacing, hull_margin_mm=m)[0] > 0,
                       truth) for m in args.margins]
        group = ("real" if not path.stem.startswith("case")
                 else "infected" if bool(d["infected"]) else "clean")
        groups.setdefault(group, []).append(values)
        print(f"{path.stem:32} {group:9}", " ".join(f"{v:.4f}" for v in values), flush=True)
    for group, values in groups.items():
        print(f"mean {group:9} n={len(values)}",
              " ".join(f"{x:.4f}" for x in np.mean(values, axis=0)))


if __name__ == "__main__":
    main()
