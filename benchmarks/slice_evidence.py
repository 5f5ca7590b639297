"""Choosing the lesion evidence scale A0 of the slice probability (covidct.slice_evidence).

    .venv/bin/python benchmarks/slice_evidence.py [--manifest benchmarks/real_manifest.json]
        [--synthetic DIR ...] [--cache DIR] [--scales 0 0.5 1 2 4 8]

Every study is analysed once with the shipped models (`covidct.pipeline.analyze`, default
settings); the classifier's slice probability and the lesion measure's area per slice are
kept (cached as .npz), and the fusion is recomputed for each scale A0 (0: the classifier
alone). Per scale:

- real validation series with radiologists' slice labels (manifest studies with
  `slice_labels`): slice AUC each and pooled (slices without lung count with p = 0);
- every real study of the manifest with a whole chest: its positive-slice ratio at the model
  card's slice threshold and the decision at its case threshold (no coverage rules);
- synthetic corpora (`--synthetic`, synth layout with truth masks; e.g. the held-out family
  of benchmarks/heldout_family.py): slice AUC against the truth slices, case accuracy.

Writes benchmarks/results/slice_evidence_<evidence>.txt and .json. The scale is chosen on the real
validation series and the real negatives (allowed for choosing thresholds), then checked on
the synthetic corpora, which play no part in the choice.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def analyse(path: Path, cache: Path, name: str, bundle) -> dict[str, np.ndarray]:
    target = cache / f"{name}.npz"
    if target.is_file():
        return dict(np.load(target))
    from covidct.config import AnalysisConfig
    from covidct.io import load_volume
    from covidct.pipeline import analyze

    volume = load_volume(path)
    result = analyze(volume, AnalysisConfig(), bundle)
    from covidct.lesions import CONSOLIDATION, GGO
    from covidct.slice_evidence import slice_area_cm2

    labels = result.lesion_labels
    arrays = {"classifier_prob": np.asarray(result.classifier_prob, np.float32),
              "ggo_cm2": slice_area_cm2(labels == GGO, volume.spacing_mm),
              "consolidation_cm2": slice_area_cm2(labels == CONSOLIDATION, volume.spacing_mm),
              "has_lung": np.asarray(result.has_lung, bool),
              "z_mm": volume.slice_positions_mm()}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(target, **arrays)
    return arrays


EVIDENCE = {"ggo": ("ggo_cm2",), "all": ("ggo_cm2", "consolidation_cm2")}


def fused(arrays: dict[str, np.ndarray], scale: float, kind: str) -> np.ndarray:
    from covidct.slice_evidence import fuse

    area = sum(arrays[key] for key in EVIDENCE[kind])
    p = fuse(arrays["classifier_prob"], area, scale)
    return np.where(arrays["has_lung"], p, 0.0)


def ratio(arrays: dict[str, np.ndarray], scale: float, kind: str, slice_t: float) -> float:
    lung = arrays["has_lung"]
    return float((fused(arrays, scale, kind)[lung] >= slice_t).sum() / max(int(lung.sum()), 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=HERE / "real_manifest.json")
    parser.add_argument("--synthetic", type=Path, action="append", default=[])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/slice_evidence_cache"))
    parser.add_argument("--scales", type=float, nargs="+", default=[0, 0.5, 1, 2, 4, 8])
    parser.add_argument("--evidence", choices=sorted(EVIDENCE), default="ggo",
                        help="lesion labels whose area is the evidence (default ggo)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    kind = args.evidence

    from covidct.io import load_volume
    from covidct.models.registry import load_bundle
    from covidct.train.metrics import roc_auc
    from covidct.train.real_studies import load_manifest, match_slice_labels

    bundle = load_bundle()
    slice_t = float(bundle.classifier.spec.slice_threshold)
    case_t = float(bundle.classifier.spec.case_threshold)
    manifest = load_manifest(args.manifest)
    real: dict[str, dict] = {}
    for spec in manifest.studies:
        if spec.expected == "indeterminate":
            continue
        arrays = analyse(spec.path, args.cache / "real", spec.name, bundle)
        labels = None
        if spec.slice_labels is not None:
            labels = match_slice_labels(load_volume(spec.path), spec.slice_labels).infection
        real[spec.name] = {"arrays": arrays, "labels": labels, "expected": spec.expected}
        print(f"analysed {spec.name}", file=sys.stderr, flush=True)

    synthetic: dict[str, list[dict]] = {}
    for corpus in args.synthetic:
        from covidct.train.masks import slice_labels_from_masks
        from covidct.train.volumes import read_label_map

        rows = []
        for case_dir in sorted(p for p in corpus.iterdir() if (p / "truth.json").is_file()):
            arrays = analyse(case_dir / "ct.nii.gz", args.cache / corpus.name, case_dir.name,
                             bundle)
            volume = load_volume(case_dir / "ct.nii.gz")
            infection = np.asarray(read_label_map(case_dir / "infection.nii.gz", volume,
                                                  name="infection")) > 0
            truth = json.loads((case_dir / "truth.json").read_text())
            rows.append({"arrays": arrays, "covid": truth["label"] == "covid",
                         "labels": slice_labels_from_masks(infection).astype(np.int8)})
            print(f"analysed {corpus.name}/{case_dir.name}", file=sys.stderr, flush=True)
        synthetic[corpus.name] = rows

    report: dict = {"slice_threshold": slice_t, "case_threshold": case_t, "scales": {}}
    lines = [f"# Slice probability = noisy-OR(classifier, 1 - exp(-area / A0)), area: "
             f"{args.evidence} cm2 on the slice; A0 = 0: classifier alone",
             f"slice threshold {slice_t:.3f}, case threshold {case_t:.3f} (model card)", ""]
    for scale in args.scales:
        row: dict = {}
        pooled_p, pooled_y = [], []
        for name, study in real.items():
            p = fused(study["arrays"], scale, kind)
            entry = {"ratio": round(ratio(study["arrays"], scale, kind, slice_t), 3)}
            entry["decision"] = ("covid-suspected" if entry["ratio"] > case_t
                                 else "not-suspected")
            if study["labels"] is not None:
                keep = study["labels"] >= 0
                if (study["labels"] == 1).any():
                    entry["auc"] = round(float(roc_auc(p[keep], study["labels"][keep] == 1)), 3)
                pooled_p.append(p[keep])
                pooled_y.append(study["labels"][keep] == 1)
            row[name] = entry
        row["pooled_real_auc"] = round(float(roc_auc(np.concatenate(pooled_p),
                                                     np.concatenate(pooled_y))), 3)
        for corpus, rows in synthetic.items():
            ps = [fused(r["arrays"], scale, kind)[r["arrays"]["has_lung"] | (r["labels"] == 1)]
                  for r in rows]
            ys = [(r["labels"] == 1)[r["arrays"]["has_lung"] | (r["labels"] == 1)]
                  for r in rows]
            correct = [(ratio(r["arrays"], scale, kind, slice_t) > case_t) == r["covid"]
                       for r in rows]
            negatives = [ratio(r["arrays"], scale, kind, slice_t) for r in rows if not r["covid"]]
            row[corpus] = {"slice_auc": round(float(roc_auc(np.concatenate(ps),
                                                            np.concatenate(ys))), 3),
                           "case_accuracy": round(float(np.mean(correct)), 3),
                           "cases": len(rows),
                           "negative_ratio_max": round(max(negatives), 3) if negatives else None}
        report["scales"][str(scale)] = row
        lines.append(f"A0 = {scale:g} cm2: pooled real slice AUC {row['pooled_real_auc']:.3f}")
        for name in real:
            e = row[name]
            auc = f", slice AUC {e['auc']:.3f}" if "auc" in e else ""
            lines.append(f"  {name:28s} ratio {e['ratio']:.3f} -> {e['decision']} "
                         f"(expected {real[name]['expected']}){auc}")
        for corpus in synthetic:
            e = row[corpus]
            lines.append(f"  synthetic {corpus}: slice AUC {e['slice_auc']:.3f}, case accuracy "
                         f"{e['case_accuracy']:.3f} of {e['cases']}, largest negative ratio "
                         f"{e['negative_ratio_max']}")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"slice_evidence_{kind}.txt").write_text(text + "\n", encoding="utf-8")
    (args.out / f"slice_evidence_{kind}.json").write_text(json.dumps(report, indent=1) + "\n",
                                                   encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
