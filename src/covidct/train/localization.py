"""Localization measures: the lesion mask and volumes against a truth mask, and the infection
mask against radiologists' per-slice lobe labels.

- per case with a truth infection mask (synthetic corpora, inserted lesions): lesion Dice,
  infection volume and Corona score (cm3) beside the true infection volume;
- pooled over the cases whose truth holds infection: median Dice, median absolute and signed
  relative volume error, Spearman correlation of infection volume and of the Corona score
  (Gozes et al. 2020) with the true volume;
- real series with lobe labels (COVID-CT-MD label CSV columns LLL, LUL, RLL, RML, RUL): the share
  of labelled lobe-slices whose lobe region holds lesion. There is no lobe segmentation: a
  lobe's region on a slice is approximated by its lung (right for RUL/RML/RLL, left for
  LUL/LLL) on that slice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from covidct.train.metrics import dice, spearman

LOBE_SIDE = {"RUL": 1, "RML": 1, "RLL": 1, "LUL": 2, "LLL": 2}  # lung label of each lobe


def case_localization(found: np.ndarray, truth: np.ndarray, voxel_volume_mm3: float,
                      infection_cm3: float, corona_score_cm3: float) -> dict[str, Any]:
    """One case: found and truth are (z, y, x) masks (non-zero = lesion) on one grid."""
    found, truth = np.asarray(found) > 0, np.asarray(truth) > 0
    true_cm3 = float(np.count_nonzero(truth)) * voxel_volume_mm3 / 1000.0
    return {"lesion_dice": float(dice(found, truth)) if truth.any() else None,
            "infection_cm3": float(infection_cm3), "true_infection_cm3": true_cm3,
            "corona_score_cm3": float(corona_score_cm3)}


def pooled_localization(rows: Sequence[Mapping[str, Any] | None]) -> dict[str, Any]:
    """Median Dice, volume errors and Spearman over the rows whose truth holds infection;
    the largest infection volume found where the truth holds none."""
    rows = [r for r in rows if r is not None]
    ill = [r for r in rows if r["true_infection_cm3"] > 0]
    clean = [r for r in rows if r["true_infection_cm3"] <= 0]
    out: dict[str, Any] = {"cases_with_infection": len(ill), "cases_without": len(clean),
                           "max_infection_cm3_without": (
                               round(max(r["infection_cm3"] for r in clean), 3)
                               if clean else None)}
    if not ill:
        return out
    true = np.array([r["true_infection_cm3"] for r in ill])
    found = np.array([r["infection_cm3"] for r in ill])
    corona = np.array([r["corona_score_cm3"] for r in ill])
    signed = (found - true) / true
    out.update({
        "lesion_dice_median": _r(np.median([r["lesion_dice"] for r in ill])),
        "lesion_dice_mean": _r(np.mean([r["lesion_dice"] for r in ill])),
        "infection_volume_median_relative_error": _r(np.median(np.abs(signed))),
        "infection_volume_median_signed_relative_error": _r(np.median(signed)),
        "infection_volume_spearman": _r(spearman(found, true)) if len(ill) > 2 else None,
        "corona_score_spearman": _r(spearman(corona, true)) if len(ill) > 2 else None,
    })
    return out


def lobe_hits(infection: np.ndarray, lung_mask: np.ndarray,
              lobes: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Share of labelled lobe-slices whose lobe region (the lobe's lung side on that slice,
    see the module docstring) holds lesion, per lobe and overall.

    lobes: lobe name -> (z,) int8 (1 labelled infected, 0 not, -1 no row)."""
    z = lung_mask.shape[0]
    has = np.zeros((z, 3), dtype=bool)  # [slice, side label]
    for k in range(z):
        inf = infection[k] > 0
        if inf.any():
            sides = lung_mask[k][inf]
            has[k, 1], has[k, 2] = bool((sides == 1).any()), bool((sides == 2).any())
    per: dict[str, Any] = {}
    hit_total = label_total = 0
    for lobe, flags in lobes.items():
        labelled = np.flatnonzero(np.asarray(flags) == 1)
        hits = int(has[labelled, LOBE_SIDE[lobe]].sum())
        per[lobe] = {"labelled_slices": int(labelled.size), "with_lesion": hits}
        hit_total += hits
        label_total += int(labelled.size)
    return {"share": _r(hit_total / label_total) if label_total else None,
            "labelled_lobe_slices": label_total, "with_lesion": hit_total, "per_lobe": per,
            "note": "lobe region approximated by its lung side on the slice "
                    "(no lobe segmentation)"}


def _r(value: float | None, digits: int = 4) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), digits)


def study_localization(result: Any, infection_labels: np.ndarray | None,
                       lobes: Mapping[str, np.ndarray] | None) -> dict[str, Any]:
    """The lesion measures of one analysis (a covidct.pipeline.CaseResult) and, with slice
    labels ((z,) int8: 1 infected, 0 clean, -1 unlabelled), where its infection mask falls:
    the share of labelled infected slices holding lesion, of labelled clean slices holding
    lesion, of lesion slices labelled infected, and with lobe labels lobe_hits."""
    m = result.metrics
    infection = np.asarray(result.infection_mask)
    out: dict[str, Any] = {
        "infection_cm3": _r(m.infection_volume_cm3, 2),
        "ggo_cm3": _r(m.ggo_volume_cm3, 2),
        "consolidation_cm3": _r(m.consolidation_volume_cm3, 2),
        "percent_opacity": _r(m.density.percent_opacity, 3) if m.density else None,
        "corona_score_cm3": _r(m.corona_score_cm3, 2)}
    if infection_labels is None:
        return out
    with_lesion = infection.reshape(infection.shape[0], -1).any(axis=1)
    ill, clean = infection_labels == 1, infection_labels == 0
    out["labelled_infected_slices_with_lesion"] = (
        _r(float(with_lesion[ill].mean())) if ill.any() else None)
    out["labelled_clean_slices_with_lesion"] = (
        _r(float(with_lesion[clean].mean())) if clean.any() else None)
    scored = with_lesion & (ill | clean)
    out["lesion_slices_labelled_infected"] = (
        _r(float(ill[scored].mean())) if scored.any() else None)
    if lobes is not None:
        out["lobes"] = lobe_hits(infection, np.asarray(result.lung_mask), lobes)
    return out
