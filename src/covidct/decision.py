"""The case decision: how many lung slices look abnormal, against a calibrated threshold.

A slice is positive when its probability is >= the slice threshold; a case is
'covid-suspected' when positive slices / lung slices > the case threshold (both thresholds
are calibrated on a validation split and stored in the model card). With too little lung
to judge, the case is 'indeterminate' with the reason:

- fewer than MIN_LUNG_SLICES (3) slices with lung: a single slice, a scout, a series
  without chest, an abdomen series that grazes the lung bases;
- when per-slice lung areas and the slice spacing are given, a lung volume under
  MIN_LUNG_VOLUME_CM3 (250 cm3, ~5 % of adult lungs at inspiration): an abdomen series
  that covers only the lung bases, a thick-slab partial scan;
- when the lung's extent along the body axis is given, an extent under
  MIN_LUNG_EXTENT_MM (80 mm): only the bases or the apices are in the series. Whole lungs
  span about 200-300 mm (the real chest series in shared/data/real: 260-330 mm); the real
  abdomen series that graze the lung bases show it over 16 and 66 mm
  (benchmarks/results/coverage.txt);
- when the share of lung slices whose lung touches the image edge is given, a share of
  MAX_FOV_CUT_SHARE (25 %) or more: the field of view cuts through the lungs (a targeted,
  e.g. cardiac, reconstruction), so whole lungs are not seen. A full field of view keeps
  the lungs off the edge on every slice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

COVID_SUSPECTED = "covid-suspected"
NOT_SUSPECTED = "not-suspected"
INDETERMINATE = "indeterminate"
LABELS = (COVID_SUSPECTED, NOT_SUSPECTED, INDETERMINATE)

MIN_LUNG_SLICES = 3
MIN_LUNG_VOLUME_CM3 = 250.0
MIN_LUNG_EXTENT_MM = 80.0
MAX_FOV_CUT_SHARE = 0.25


@dataclass(frozen=True)
class Decision:
    label: str  # one of LABELS
    positive_slice_ratio: float | None  # positive / lung slices (None without lung)
    threshold: float  # the case threshold the ratio is compared with
    lung_slices: int
    positive_slices: int
    reason: str
    slice_threshold: float | None = None
    lung_volume_cm3: float | None = None  # when lung areas and the slice spacing were given


def decide(prob: np.ndarray, has_lung: np.ndarray, slice_threshold: float,
           case_threshold: float, *, lung_area_mm2: np.ndarray | None = None,
           slice_spacing_mm: float | None = None, lung_extent_mm: float | None = None,
           fov_cut_share: float | None = None,
           min_lung_slices: int = MIN_LUNG_SLICES,
           min_lung_volume_cm3: float = MIN_LUNG_VOLUME_CM3,
           min_lung_extent_mm: float = MIN_LUNG_EXTENT_MM) -> Decision:
    """The decision for one case.

    prob: (z,) p(abnormal) per slice; has_lung: (z,) bool; lung_area_mm2: optional (z,)
    lung area per slice, with slice_spacing_mm for the lung-volume minimum; lung_extent_mm:
    optional craniocaudal extent of the lung in the series (covidct.coverage);
    fov_cut_share: optional share of lung slices whose lung touches the image edge.
    """
    prob = np.asarray(prob, dtype=np.float64).reshape(-1)
    has_lung = np.asarray(has_lung, dtype=bool).reshape(-1)
    if prob.shape != has_lung.shape:
        raise ValueError(f"prob {prob.shape} and has_lung {has_lung.shape} differ in length.")
    if not np.all(np.isfinite(prob[has_lung])):
        logger.warning("Non-finite slice probabilities on lung slices are taken as 0.")
        prob = np.nan_to_num(prob, nan=0.0, posinf=1.0, neginf=0.0)
    lung_slices = int(has_lung.sum())
    positive_slices = int(np.sum(has_lung & (prob >= slice_threshold)))
    volume_cm3 = None
    if lung_area_mm2 is not None and slice_spacing_mm is not None:
        area = np.asarray(lung_area_mm2, dtype=np.float64).reshape(-1)
        volume_cm3 = float(area[has_lung].sum() * slice_spacing_mm / 1000.0)
    common = {"threshold": float(case_threshold), "lung_slices": lung_slices,
              "positive_slices": positive_slices, "slice_threshold": float(slice_threshold),
              "lung_volume_cm3": volume_cm3}

    if lung_slices < min_lung_slices:
        reason = ("no slice holds lung: the series does not show the chest (a head, "
                  "abdomen or limb series?)" if lung_slices == 0 else
                  f"only {lung_slices} slice(s) hold lung (minimum {min_lung_slices}): "
                  "not a chest CT or too short a series")
        return Decision(INDETERMINATE, None if lung_slices == 0 else
                        positive_slices / lung_slices, reason=reason, **common)
    ratio = positive_slices / lung_slices
    if lung_extent_mm is not None and lung_extent_mm < min_lung_extent_mm:
        reason = (f"the series shows lung over only {lung_extent_mm:.0f} mm along the body "
                  f"axis (at least {min_lung_extent_mm:.0f} mm needed; whole lungs span about "
                  "200-300 mm): only the lung bases or apices are covered, e.g. an abdomen "
                  "or neck series. Analyse a chest CT that covers the lungs.")
        return Decision(INDETERMINATE, ratio, reason=reason, **common)
    if fov_cut_share is not None and fov_cut_share >= MAX_FOV_CUT_SHARE:
        reason = (f"the field of view cuts through the lungs on {100 * fov_cut_share:.0f} % "
                  "of the lung slices (a targeted reconstruction, e.g. cardiac): the whole "
                  "lungs are not in the images. Reconstruct or export the series with a full "
                  "field of view.")
        return Decision(INDETERMINATE, ratio, reason=reason, **common)
    if volume_cm3 is not None and volume_cm3 < min_lung_volume_cm3:
        reason = (f"only {volume_cm3:.0f} cm3 of lung in the series (at least "
                  f"{min_lung_volume_cm3:.0f} cm3 needed): partial chest coverage or "
                  "too little lung to decide")
        return Decision(INDETERMINATE, ratio, reason=reason, **common)
    suspected = ratio > case_threshold
    relation = ">" if suspected else "<="
    reason = (f"{positive_slices} of {lung_slices} lung slices positive (p >= "
              f"{slice_threshold:.3f}); ratio {ratio:.3f} {relation} {case_threshold:.3f}")
    return Decision(COVID_SUSPECTED if suspected else NOT_SUSPECTED, ratio, reason=reason,
                    **common)
