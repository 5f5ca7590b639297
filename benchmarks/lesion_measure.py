"""Lesion measure before / after: the Gozes et al. heatmap mask vs the HU lesion segmentation.

For every case the pipeline's stages before the lesion stage run once (covidct.pipeline
.analyze with the shipped models: lung and airway masks, slice probabilities, positive
slices, fused Grad-CAM heatmap) and are cached as .npz; then both infection masks are made
from the same arrays:

- before: ``covidct.case.infection_mask`` (thresholded, smoothed heatmap on positive slices,
  config defaults) -- what `covidct analyze` wrote until now (``--infection-method heatmap``);
- after: ``covidct.lesions.segment_lesions`` (the default now), timed.

Corpora:

- synthetic test corpus (``covidct synth`` seed 2000, 24 cases, truth infection.nii.gz),
- real LIDC-IDRI CT with inserted lesions (``covidct synth --insert-into``, 18 cases with
  truth; 2 untouched),
- real covid-ct-md series P001, cap001, normal001 with radiologists' slice (and for P001
  lobe) labels (P001 and cap001 in the corrected order of benchmarks/labels): does the
  infection mask fall on labelled slices; normal001's volume.

Measured: lesion Dice (median over cases with infection), infection volume median relative
error (absolute and signed) and Spearman against the truth volume, Corona score Spearman,
the largest infection volume on cases without infection, and the lesion stage's time.

    PYTHONPATH=src .venv/bin/python benchmarks/lesion_measure.py \\
        [--test /work/corpus/test] [--lidc /work/corpus/lidc_ins] \\
        [--real ../shared/data/real/covid-ct-md] [--cache /tmp/lesion_cache]

Writes benchmarks/results/lesion_measure.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def stage_arrays(name: str, path: Path, cache: Path, bundle_box: dict) -> dict:
    """The pipeline's arrays before the lesion stage, from the cache or a fresh analysis."""
    out = cache / f"{name}.npz"
    if not out.exists():
        from covidct.config import AnalysisConfig
        from covidct.io import load_volume
        from covidct.models.registry import load_bundle
        from covidct.pipeline import analyze

        if "bundle" not in bundle_box:
            bundle_box["bundle"] = load_bundle(None)
        r = analyze(load_volume(path), AnalysisConfig(), bundle_box["bundle"])
        cache.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out, lung=r.lung_mask, airway=r.airway_mask,
                            heatmap=r.heatmap.astype(np.float16), prob=r.prob,
                            positive=r.positive, has_lung=r.has_lung,
                            corona=r.metrics.corona_score_cm3, label=r.decision.label)
    c = np.load(out)
    return {k: c[k] for k in ("lung", "airway", "heatmap", "positive", "corona", "label")}


def measure(name: str, ct: Path, cache: Path, bundle_box: dict, truth_path: Path | None
            ) -> tuple[dict, object, dict]:
    from covidct import case as case_mod
    from covidct.config import AnalysisConfig
    from covidct.io import load_volume, read_nifti_array
    from covidct.lesions import segment_lesions

    a = stage_arrays(name, ct, cache, bundle_box)
    volume = load_volume(ct)
    heat = a["heatmap"].astype(np.float32)
    cfg = AnalysisConfig()
    before = case_mod.infection_mask(heat, a["lung"], a["positive"], volume.spacing_mm,
                                     threshold=cfg.heatmap_threshold,
                                     sigma_mm=cfg.infection_sigma_mm,
                                     smooth_threshold=cfg.infection_smooth_threshold)
    start, cpu = time.perf_counter(), time.process_time()
    lesion = segment_lesions(volume.hu, a["lung"], a["airway"], heat, a["positive"],
                             volume.affine, volume.spacing_mm)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    z_mm = volume.slice_positions_mm()
    m_before = case_mod.measure_case(a["lung"], before, z_mm, volume.voxel_volume_mm3,
                                     float(a["corona"]))
    after = (lesion.labels > 0).astype(np.uint8)
    m_after = case_mod.measure_case(a["lung"], after, z_mm, volume.voxel_volume_mm3,
                                    float(a["corona"]), lesion_labels=lesion.labels,
                                    affine=volume.affine, density=lesion.density)
    row = {"case": name, "shape": list(volume.shape),
           "spacing_mm": [round(s, 3) for s in volume.spacing_mm],
           "decision": str(a["label"]), "positive_slices": int(a["positive"].sum()),
           "corona_score_cm3": round(float(a["corona"]), 2),
           "before_infection_cm3": round(m_before.infection_volume_cm3, 2),
           "after_infection_cm3": round(m_after.infection_volume_cm3, 2),
           "after_ggo_cm3": round(m_after.ggo_volume_cm3, 2),
           "after_consolidation_cm3": round(m_after.consolidation_volume_cm3, 2),
           "after_po": round(lesion.density.percent_opacity, 3),
           "after_pho": round(lesion.density.percent_high_opacity, 3),
           "after_mean_lung_hu": round(lesion.density.mean_lung_hu, 1),
           "lesion_stage_s": round(seconds, 3), "lesion_stage_cpu_s": round(cpu, 3)}
    if truth_path is not None:
        from covidct.train.metrics import dice

        truth = read_nifti_array(truth_path)[0] > 0
        row["true_infection_cm3"] = round(float(truth.sum()) * volume.voxel_volume_mm3 / 1e3, 2)
        if truth.any():
            row["before_dice"] = round(dice(before, truth), 4)
            row["after_dice"] = round(dice(after, truth), 4)
    return row, volume, {"before": before, "after": after, "lung": a["lung"]}


def pooled(rows: list[dict]) -> dict:
    from covidct.train.localization import pooled_localization

    out = {}
    for key in ("before", "after"):
        loc = [{"lesion_dice": r.get(f"{key}_dice"), "infection_cm3": r[f"{key}_infection_cm3"],
                "true_infection_cm3": r["true_infection_cm3"],
                "corona_score_cm3": r["corona_score_cm3"]} for r in rows]
        out[key] = pooled_localization(loc)
    for key in ("lesion_stage_s", "lesion_stage_cpu_s"):
        times = [r[key] for r in rows]
        out[key] = {"median": round(float(np.median(times)), 3),
                    "max": round(float(np.max(times)), 3)}
    return out


def corpus(root: Path, prefix: str, cache: Path, box: dict, limit: int | None,
           cached_only: bool = False) -> list[dict]:
    rows = []
    for d in sorted(root.glob("case_*"))[:limit]:
        if cached_only and not (cache / f"{prefix}_{d.name}.npz").exists():
            continue
        row, _, _ = measure(f"{prefix}_{d.name}", d / "ct.nii.gz", cache, box,
                            d / "infection.nii.gz")
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def real_series(root: Path, cache: Path, box: dict) -> list[dict]:
    from covidct.train.localization import lobe_hits
    from covidct.train.real_studies import match_slice_labels

    rows = []
    for name, lobes in (("P001", True), ("cap001", False), ("normal001", False)):
        row, volume, masks = measure(f"real_{name}", root / name, cache, box, None)
        # P001 and cap001: the shared labels in corrected slice order
        # (benchmarks/covid_ct_md_label_order.py); normal001's are all 0.
        fixed = Path(__file__).resolve().parent / "labels" / "covid-ct-md" / f"{name}.csv"
        labels = match_slice_labels(volume, fixed if fixed.is_file()
                                    else root / "labels" / f"{name}.csv", lobes=lobes)
        ill, clean = labels.infection == 1, labels.infection == 0
        for key in ("before", "after"):
            m = masks[key]
            with_lesion = m.reshape(m.shape[0], -1).any(axis=1)
            scored = with_lesion & (ill | clean)
            row[f"{key}_labelled_infected_slices_with_lesion"] = (
                round(float(with_lesion[ill].mean()), 4) if ill.any() else None)
            row[f"{key}_labelled_clean_slices_with_lesion"] = (
                round(float(with_lesion[clean].mean()), 4) if clean.any() else None)
            row[f"{key}_lesion_slices_labelled_infected"] = (
                round(float(ill[scored].mean()), 4) if scored.any() else None)
            if labels.lobes is not None:
                row[f"{key}_lobes"] = lobe_hits(m, masks["lung"], labels.lobes)
        row["labelled_slices"] = int((ill | clean).sum())
        row["labelled_infected_slices"] = int(ill.sum())
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def fmt(v: object) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def markdown(doc: dict) -> str:
    lines = ["# Lesion measure: heatmap mask (before) vs HU lesion segmentation (after)", "",
             "Both from the same pipeline arrays (shipped models); see "
             "benchmarks/lesion_measure.py.", "",
             f"machine: {os.cpu_count()} CPUs, load average at end {doc['load_average']}",
             f"cases measured: {doc['cases_measured']}", ""]
    keys = ("lesion_dice_median", "infection_volume_median_relative_error",
            "infection_volume_median_signed_relative_error", "infection_volume_spearman",
            "corona_score_spearman", "max_infection_cm3_without")
    for corpus_name in ("synthetic_test", "lidc_inserted"):
        s = doc["summary"].get(corpus_name)
        if not s:
            continue
        lines += [f"## {corpus_name} ({s['after']['cases_with_infection']} cases with "
                  f"infection, {s['after']['cases_without']} without)", "",
                  "| measure | before | after | target |", "|---|---|---|---|"]
        targets = {"lesion_dice_median": ">= 0.6",
                   "infection_volume_median_relative_error": "<= 0.25",
                   "infection_volume_spearman": ">= 0.90"}
        for k in keys:
            lines.append(f"| {k} | {fmt(s['before'].get(k))} | {fmt(s['after'].get(k))} | "
                         f"{targets.get(k, '')} |")
        lines += ["", f"lesion stage time per case: wall median {s['lesion_stage_s']['median']} s, "
                      f"max {s['lesion_stage_s']['max']} s; CPU (process time, one thread) "
                      f"median {s['lesion_stage_cpu_s']['median']} s, max "
                      f"{s['lesion_stage_cpu_s']['max']} s", "",
                  "| case | true cm3 | before cm3 | after cm3 (GGO / cons.) | Dice before | "
                  "Dice after | PO % | PHO % | stage s |", "|---|---|---|---|---|---|---|---|---|"]
        for r in doc[corpus_name]:
            lines.append(
                f"| {r['case']} | {r['true_infection_cm3']} | {r['before_infection_cm3']} | "
                f"{r['after_infection_cm3']} ({r['after_ggo_cm3']} / "
                f"{r['after_consolidation_cm3']}) | {r.get('before_dice', '-')} | "
                f"{r.get('after_dice', '-')} | {r['after_po']} | {r['after_pho']} | "
                f"{r['lesion_stage_s']} |")
        lines.append("")
    if doc.get("real"):
        lines += ["## real covid-ct-md series (radiologists' slice labels)", "",
                  "| series | decision | labelled infected / labelled | before cm3 | after cm3 | "
                  "infected slices with lesion (before / after) | clean slices with lesion "
                  "(before / after) | lesion slices labelled infected (before / after) |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in doc["real"]:
            def pair(key: str, row: dict = r) -> str:
                return f"{fmt(row[f'before_{key}'])} / {fmt(row[f'after_{key}'])}"

            lines.append(
                f"| {r['case']} | {r['decision']} | {r['labelled_infected_slices']} / "
                f"{r['labelled_slices']} | {r['before_infection_cm3']} | "
                f"{r['after_infection_cm3']} | {pair('labelled_infected_slices_with_lesion')} | "
                f"{pair('labelled_clean_slices_with_lesion')} | "
                f"{pair('lesion_slices_labelled_infected')} |")
            if "after_lobes" in r:
                b, a = r["before_lobes"], r["after_lobes"]
                lines.append(f"| {r['case']} lobe-slices with lesion in their lobe region | | "
                             f"{a['labelled_lobe_slices']} | | | {b['with_lesion']} / "
                             f"{a['with_lesion']} ({fmt(b['share'])} / {fmt(a['share'])}) | | |")
        lines += ["", "Lobe regions are approximated by the lobe's lung side on the slice (no "
                      "lobe segmentation)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", type=Path, default=Path("/work/corpus/test"))
    parser.add_argument("--lidc", type=Path, default=Path("/work/corpus/lidc_ins"))
    parser.add_argument("--real", type=Path,
                        default=Path(__file__).resolve().parents[2]
                        / "shared/data/real/covid-ct-md")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/lesion_cache"))
    parser.add_argument("--limit", type=int, default=None, help="cases per corpus")
    parser.add_argument("--cached-only", action="store_true",
                        help="only the cases whose pipeline arrays are in the cache")
    args = parser.parse_args()
    box: dict = {}
    doc: dict = {"summary": {}}
    if args.test.is_dir():
        doc["synthetic_test"] = corpus(args.test, "test", args.cache, box, args.limit,
                                       args.cached_only)
        doc["summary"]["synthetic_test"] = pooled(doc["synthetic_test"])
    if args.lidc.is_dir():
        doc["lidc_inserted"] = corpus(args.lidc, "lidc", args.cache, box, args.limit,
                                      args.cached_only)
        doc["summary"]["lidc_inserted"] = pooled(doc["lidc_inserted"])
    if (args.real / "labels").is_dir():
        doc["real"] = real_series(args.real, args.cache, box)
    doc["load_average"] = [round(v, 2) for v in os.getloadavg()]
    doc["cases_measured"] = {k: len(doc[k]) for k in ("synthetic_test", "lidc_inserted", "real")
                             if k in doc}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "lesion_measure.json").write_text(json.dumps(doc, indent=1) + "\n")
    text = markdown(doc)
    (RESULTS / "lesion_measure.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
