"""The slice stage: p(abnormal) for each slice that holds lung.

One crop box per case (`preprocess.lung_roi_box` on the whole-case lung mask), the
seed's classifier input (`preprocess.classifier_input`), batched no-grad inference,
bf16 autocast where the CPU runs it natively (faster; see benchmarks/model_speed.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from covidct.errors import InputError
from covidct.models.runtime import autocast, input_antialias, use_bf16
from covidct.preprocess import CropBox, classifier_input, lung_roi_box

logger = logging.getLogger(__name__)

MIN_LUNG_AREA_MM2 = 100.0  # a slice "has lung" when its mask covers at least this much


@dataclass(frozen=True)
class SliceScores:
    prob: np.ndarray  # (z,) float32 p(abnormal); 0 on slices without lung
    has_lung: np.ndarray  # (z,) bool
    box: CropBox | None  # the case's lung ROI (None without lung)


def lung_slice_flags(lung_mask: np.ndarray, spacing_mm: tuple[float, float, float],
                     min_area_mm2: float = MIN_LUNG_AREA_MM2) -> np.ndarray:
    """(z,) bool: slices whose lung area is at least `min_area_mm2`."""
    pixel_mm2 = float(spacing_mm[1]) * float(spacing_mm[2])
    area = (np.asarray(lung_mask).reshape(lung_mask.shape[0], -1) > 0).sum(axis=1) * pixel_mm2
    return area >= min_area_mm2


def _module(model: Any) -> torch.nn.Module:
    return getattr(model, "module", model)


def classify_slices(hu: np.ndarray, lung_mask: np.ndarray,
                    spacing_mm: tuple[float, float, float], model: Any, *,
                    batch_size: int = 32, dtype: str | None = None,
                    min_lung_area_mm2: float = MIN_LUNG_AREA_MM2) -> SliceScores:
    """Slice probabilities of a case. `model`: a LoadedModel or a classifier nn.Module."""
    if hu.shape != lung_mask.shape:
        raise InputError(f"CT {hu.shape} and lung mask {lung_mask.shape} differ in shape; "
                         "the mask must be on the CT's grid.")
    has_lung = lung_slice_flags(lung_mask, spacing_mm, min_lung_area_mm2)
    prob = np.zeros(hu.shape[0], dtype=np.float32)
    box = lung_roi_box(lung_mask, (spacing_mm[1], spacing_mm[2]))
    if box is None or not has_lung.any():
        logger.info("No lung slices to classify.")
        return SliceScores(prob=prob, has_lung=has_lung, box=box)
    module = _module(model).eval()
    device = next(module.parameters()).device
    bf16 = use_bf16(dtype, device)
    index = np.flatnonzero(has_lung)
    antialias = input_antialias(model)
    with torch.no_grad(), autocast(bf16, device):
        for start in range(0, index.size, batch_size):
            chunk = index[start:start + batch_size]
            x = classifier_input(hu[chunk], box, antialias=antialias).to(device)
            prob[chunk] = torch.sigmoid(module(x).float()).cpu().numpy()
    return SliceScores(prob=prob, has_lung=has_lung, box=box)
