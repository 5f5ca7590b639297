"""Evaluating the models on a labelled dataset: lung Dice, slice and case metrics.

Per case: the lung model's Dice against the reference lung mask, the HU-threshold
baseline's Dice (`covidct.train.baseline`), slice probabilities and the case decision
with the thresholds of the model card (calibrated on validation by training, never on the
evaluated data). The summary pools them:

- lung Dice (model, baseline) per case and mean, the baseline also on infected and clean
  cases separately (infected: the reference infection mask is non-empty);
- slice AUC, sensitivity, specificity at the slice threshold, over labelled slices that
  hold predicted lung plus every positive slice (a positive slice whose lung the model
  missed counts as a miss with p = 0; the many lung-free slices do not inflate specificity);
- case AUC of the positive-slice ratio, and accuracy / sensitivity / specificity of the
  decision over cases with a known label it did not call indeterminate;
- Spearman correlation of the predicted and the reference positive-slice ratios;
- localization (unless turned off): the full analysis (`covidct.pipeline.analyze`) runs on
  every case, so the slice probabilities are the ones `covidct analyze` reports; on cases
  with a reference infection mask, lesion Dice, infection volume error and Spearman, Corona
  score Spearman are pooled (`covidct.train.localization`). Turned off, the slice figures
  are the classifier's alone (no GGO evidence).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from covidct.decision import INDETERMINATE, Decision, decide
from covidct.train.baseline import threshold_lungs
from covidct.train.datasets import LoadedCase, load_case
from covidct.train.metrics import (
    accuracy,
    dice,
    roc_auc,
    roc_curve,
    sensitivity_specificity,
    spearman,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorstSlice:
    """The slice where the baseline disagrees most with the reference (for a picture)."""

    index: int
    hu: np.ndarray
    reference: np.ndarray
    baseline: np.ndarray
    model: np.ndarray


@dataclass(frozen=True)
class CaseEvaluation:
    case_id: str
    label: str | None
    infected: bool | None  # reference infection mask non-empty (None without one)
    lung_dice: float | None
    baseline_dice: float | None
    prob: np.ndarray  # (z,)
    has_lung: np.ndarray  # (z,) predicted lung slices
    slice_labels: np.ndarray | None
    decision: Decision
    worst_slice: WorstSlice | None = field(default=None, repr=False)
    slice_spacing_mm: float | None = None
    localization: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        truth_ratio = _reference_ratio(self)
        return {
            "case_id": self.case_id, "label": self.label, "infected": self.infected,
            "lung_dice": _round(self.lung_dice), "baseline_dice": _round(self.baseline_dice),
            "decision": self.decision.label,
            "positive_slice_ratio": _round(self.decision.positive_slice_ratio),
            "reference_positive_ratio": _round(truth_ratio),
            "lung_slices": self.decision.lung_slices,
            "positive_slices": self.decision.positive_slices, "reason": self.decision.reason,
            "slice_spacing_mm": _round(self.slice_spacing_mm),
            "localization": self.localization,
            "slice_prob": [round(float(p), 4) for p in self.prob],
            "slice_has_lung": [int(v) for v in self.has_lung],
            "slice_label": (None if self.slice_labels is None
                            else [int(v) for v in self.slice_labels]),
        }


def evaluate_case(bundle: Any, case: LoadedCase, slice_threshold: float,
                  case_threshold: float, *, baseline: bool = True,
                  localization: bool = True) -> CaseEvaluation:
    """Run both models (and the baseline) on one loaded case. With localization, the full
    analysis (Grad-CAM, lesions) runs, so the slice probabilities are the ones
    `covidct analyze` reports (classifier and GGO evidence, covidct.slice_evidence), and a
    reference infection mask is scored; without, the two models alone (the classifier's
    probability, no GGO evidence)."""
    from covidct.train.predict import CasePrediction, predict_case

    loc = None
    if localization:
        from covidct.config import AnalysisConfig
        from covidct.pipeline import analyze
        from covidct.train.localization import case_localization

        result = analyze(case.volume, AnalysisConfig(slice_threshold=slice_threshold,
                                                     case_threshold=case_threshold), bundle)
        pred = CasePrediction(lung_mask=result.lung_mask, prob=result.prob,
                              has_lung=result.has_lung)
        if case.infection is not None:
            loc = case_localization(result.infection_mask, case.infection,
                                    case.volume.voxel_volume_mm3,
                                    result.metrics.infection_volume_cm3,
                                    result.metrics.corona_score_cm3)
    else:
        pred = predict_case(bundle, case.volume)
    lung_dice = base_dice = None
    base = worst = None
    if case.lung is not None:
        lung_dice = dice(pred.lung_mask, case.lung)
        if baseline:
            base = threshold_lungs(case.volume)
            base_dice = dice(base, case.lung)
            worst = _worst_slice(case, base, pred.lung_mask)
    area_mm2 = (pred.lung_mask.reshape(pred.lung_mask.shape[0], -1) > 0).sum(axis=1) * (
        case.volume.spacing_mm[1] * case.volume.spacing_mm[2])
    decision = decide(pred.prob, pred.has_lung, slice_threshold, case_threshold,
                      lung_area_mm2=area_mm2, slice_spacing_mm=case.volume.spacing_mm[0])
    infected = None if case.infection is None else bool(case.infection.any())
    return CaseEvaluation(
        case_id=case.case_id, label=case.label, infected=infected, lung_dice=lung_dice,
        baseline_dice=base_dice, prob=pred.prob, has_lung=pred.has_lung,
        slice_labels=case.slice_labels, decision=decision, worst_slice=worst,
        slice_spacing_mm=float(case.volume.spacing_mm[0]), localization=loc)


def evaluate_records(bundle: Any, records: Sequence[Any], slice_threshold: float,
                     case_threshold: float, *, baseline: bool = True,
                     localization: bool = True,
                     progress: Callable[[str], None] | None = None) -> list[CaseEvaluation]:
    out = []
    for record in records:
        if progress is not None:
            progress(record.case_id)
        out.append(evaluate_case(bundle, load_case(record), slice_threshold, case_threshold,
                                 baseline=baseline, localization=localization))
    return out


def _worst_slice(case: LoadedCase, base: np.ndarray, model: np.ndarray) -> WorstSlice:
    ref = case.lung > 0
    errors = (ref != (base > 0)).reshape(ref.shape[0], -1).sum(axis=1)
    k = int(np.argmax(errors))
    return WorstSlice(index=k, hu=np.asarray(case.volume.hu[k], np.float32), reference=ref[k],
                      baseline=base[k] > 0, model=model[k] > 0)


def slice_pool(cases: Sequence[CaseEvaluation]) -> tuple[np.ndarray, np.ndarray]:
    """(prob, label) of the slices the slice metrics count (see the module docstring)."""
    probs, labels = [], []
    for case in cases:
        if case.slice_labels is None or case.slice_labels.shape != case.prob.shape:
            continue
        keep = case.has_lung | case.slice_labels
        probs.append(np.where(case.has_lung, case.prob, 0.0)[keep])
        labels.append(case.slice_labels[keep])
    if not probs:
        return np.zeros(0), np.zeros(0, bool)
    return np.concatenate(probs), np.concatenate(labels)


def _reference_ratio(case: CaseEvaluation) -> float | None:
    if case.slice_labels is None or not case.has_lung.any():
        return None
    return float(case.slice_labels[case.has_lung].mean())


def summarize(cases: Sequence[CaseEvaluation], slice_threshold: float,
              case_threshold: float) -> dict[str, Any]:
    """Pooled metrics of a list of case evaluations (JSON-ready)."""
    def mean(values: list[float | None]) -> float | None:
        kept = [v for v in values if v is not None]
        return _round(float(np.mean(kept))) if kept else None

    lung = {
        "model_dice_mean": mean([c.lung_dice for c in cases]),
        "baseline_dice_mean": mean([c.baseline_dice for c in cases]),
        "baseline_dice_infected_mean": mean([c.baseline_dice for c in cases if c.infected]),
        "baseline_dice_clean_mean": mean([c.baseline_dice for c in cases
                                          if c.infected is False]),
        "model_dice_infected_mean": mean([c.lung_dice for c in cases if c.infected]),
        "model_dice_clean_mean": mean([c.lung_dice for c in cases if c.infected is False]),
        "cases": sum(c.lung_dice is not None for c in cases),
    }
    prob, labels = slice_pool(cases)
    sens, spec = sensitivity_specificity(prob, labels, slice_threshold)
    fpr, tpr, _ = roc_curve(prob, labels)
    slices = {"auc": _round(roc_auc(prob, labels)), "sensitivity": _round(sens),
              "specificity": _round(spec), "threshold": slice_threshold,
              "slices": int(labels.size), "positive_slices": int(labels.sum()),
              "roc": {"fpr": _rounded(fpr), "tpr": _rounded(tpr)}}

    known = [c for c in cases if c.label in ("covid", "negative")]
    scored = [c for c in known if c.decision.positive_slice_ratio is not None]
    ratio = np.array([c.decision.positive_slice_ratio for c in scored], dtype=np.float64)
    truth = np.array([c.label == "covid" for c in scored], dtype=bool)
    decided = [c for c in known if c.decision.label != INDETERMINATE]
    called = np.array([c.decision.label == "covid-suspected" for c in decided], dtype=bool)
    actual = np.array([c.label == "covid" for c in decided], dtype=bool)
    case_sens, case_spec = sensitivity_specificity(called.astype(float), actual, 0.5)
    fpr, tpr, _ = roc_curve(ratio, truth)
    pairs = [(c.decision.positive_slice_ratio, _reference_ratio(c)) for c in cases]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    case_metrics = {
        "auc_positive_ratio": _round(roc_auc(ratio, truth)),
        "accuracy": _round(accuracy(called, actual)), "sensitivity": _round(case_sens),
        "specificity": _round(case_spec), "threshold": case_threshold,
        "cases_labelled": len(known), "cases_decided": len(decided),
        "indeterminate": sum(c.decision.label == INDETERMINATE for c in cases),
        "roc": {"fpr": _rounded(fpr), "tpr": _rounded(tpr)},
        "spearman_ratio_vs_reference": _round(spearman(*zip(*pairs, strict=True)))
        if len(pairs) >= 2 else None,
    }
    from covidct.train.localization import pooled_localization

    located = [c.localization for c in cases if c.localization is not None]
    return {"cases": len(cases), "lung": lung, "slice": slices, "case": case_metrics,
            "localization": pooled_localization(located) if located else None}


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), digits)


def _rounded(values: np.ndarray) -> list[float | None]:
    return [_round(v) for v in values]


def evaluate_lung_file(bundle: Any, image_path: Any, labels_path: Any, *,
                       lung_labels: tuple[int, int] = (1, 2),
                       convention: str = "right-left") -> dict[str, Any]:
    """Lung Dice of one CT against a lung label map (other labels, e.g. airway 3, excluded).

    `lung_labels`: the (first, second) labels of the two lungs, read with `convention`
    ('right-left': first is the right lung).
    """
    from pathlib import Path

    from covidct.train.masks import lung_to_right_left
    from covidct.train.predict import predict_case
    from covidct.train.volumes import read_image, read_label_map

    volume = read_image(Path(image_path))
    raw = read_label_map(Path(labels_path), volume, name="lung labels")
    raw = np.where(np.isin(raw, lung_labels), raw, 0)
    reference = lung_to_right_left(raw, convention, labels=lung_labels)
    pred = predict_case(bundle, volume)
    base = threshold_lungs(volume)

    def scores(mask: np.ndarray) -> dict[str, float | None]:
        return {"dice": _round(dice(mask, reference)),
                "dice_right": _round(dice(mask == 1, reference == 1)),
                "dice_left": _round(dice(mask == 2, reference == 2))}

    return {"image": str(image_path), "lung_labels": str(labels_path),
            "shape": list(volume.shape), "spacing_mm": [round(s, 4) for s in volume.spacing_mm],
            "model": scores(pred.lung_mask), "baseline": scores(base)}
