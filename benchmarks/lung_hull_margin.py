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
from covidct.lung import combine_with_anatomy, predict_lung_labels
from covidct.models.registry import load_bundle
from covidct.models.runtime import input_antialias, use_bf16
from covidct.train.metrics import dice

HERE = Path(__file__).resolve().parent


def build_cache(data: Path, synthetic: Path | None, cache: Path) -> None:
    """The network's labels of every case of benchmarks/lung_anatomy.py, once, into cache."""
    from lung_anatomy import reference_cases

    cache.mkdir(parents=True, exist_ok=True)
    bundle = load_bundle(None)
    for name, volume, truth, group in reference_cases(data, synthetic):
        path = cache / f"{name}.npz"
        if not path.exists():
            net = predict_lung_labels(volume.hu, bundle.lung.module, bf16=use_bf16("auto"),
                                      antialias=input_antialias(bundle.lung))
            np.savez(path, hu=volume.hu, net=net, spacing=np.array(volume.spacing_mm),
                     truth=truth, infected=group == "infected")


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
