"""Running the two models on one case, as inference does (for calibration and evaluation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from covidct.volume import Volume


@dataclass(frozen=True)
class CasePrediction:
    lung_mask: np.ndarray  # uint8 (z, y, x): 1 right, 2 left
    prob: np.ndarray  # (z,) p(abnormal); 0 where there is no lung
    has_lung: np.ndarray  # (z,) bool


def predict_case(bundle: Any, volume: Volume) -> CasePrediction:
    """Lung segmentation then slice classification on the predicted lung (no Grad-CAM)."""
    import torch

    from covidct.classify import classify_slices
    from covidct.lung import segment_lungs

    with torch.inference_mode():
        lung = np.asarray(segment_lungs(volume, bundle.lung), dtype=np.uint8)
        scores = classify_slices(volume.hu, lung, volume.spacing_mm, bundle.classifier)
    has_lung = np.asarray(scores.has_lung, dtype=bool)
    prob = np.where(has_lung, np.nan_to_num(np.asarray(scores.prob, np.float32)), 0.0)
    return CasePrediction(lung_mask=lung, prob=prob.astype(np.float32), has_lung=has_lung)
