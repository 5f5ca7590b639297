"""A slice's COVID-19 probability from the classifier and the ground-glass measure together.

The slice classifier of Gozes et al. (2020) sees a whole slice at 256 px and is unsure of a
small or faint opacity; the HU lesion measure (`covidct.lesions`) finds it, but keeps only
lesions the classifier flagged on at least one slice. The two are combined per slice as
independent evidence (noisy-OR):

    p = 1 - (1 - p_classifier) * (1 - q),    q = 1 - exp(-A / A0)

with A the slice's ground-glass opacity (GGO) area in cm² and A0 `scale_cm2`: a slice with
A0 cm² of GGO has q = 0.63. Only GGO counts: COVID-19 pneumonia is GGO-predominant (Chung et
al., Radiology 2020;295:202-207), while what the measure calls consolidation also holds
masses, nodules and the chest-wall sliver a lung outline takes in. A slice without GGO keeps
the classifier's probability, so a normal lung is scored as before; the fused value never
lies below the classifier's. `scale_cm2` = 0 turns the fusion off. The scale was chosen on
the real validation series (`benchmarks/slice_evidence.py`).
"""

from __future__ import annotations

import numpy as np


def slice_area_cm2(mask: np.ndarray, spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """(z,) area per slice in cm² of a (z, y, x) mask (nonzero voxels); spacing (dz, dy, dx)."""
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"mask must be (z, y, x); got shape {mask.shape}")
    per_slice = np.count_nonzero(mask.reshape(mask.shape[0], -1), axis=1)
    return per_slice * (float(spacing_mm[1]) * float(spacing_mm[2]) / 100.0)


def fuse(classifier_prob: np.ndarray, ggo_cm2: np.ndarray, scale_cm2: float) -> np.ndarray:
    """(z,) float32 noisy-OR of the classifier's probability and the GGO evidence.

    classifier_prob, ggo_cm2: (z,); scale_cm2 > 0 (cm²), or 0 for the classifier's
    probability unchanged. Raises ValueError on a negative scale or mismatched shapes.
    """
    p = np.asarray(classifier_prob, dtype=np.float64)
    area = np.asarray(ggo_cm2, dtype=np.float64)
    if p.shape != area.shape:
        raise ValueError(f"{p.shape} probabilities for {area.shape} GGO areas")
    if scale_cm2 < 0:
        raise ValueError(f"scale_cm2 must be >= 0; got {scale_cm2}")
    if scale_cm2 == 0:
        return p.astype(np.float32)
    q = -np.expm1(-np.maximum(area, 0.0) / scale_cm2)
    return (1.0 - (1.0 - p) * (1.0 - q)).astype(np.float32)
