"""Case-level measurements: Corona score, volumes, zones, ventral/dorsal halves, the
zone-based score, and the Gozes et al. (2020) heatmap infection mask.

Pure functions on arrays (z, y, x) with spacing (dz, dy, dx) in mm. Lung labels: 1 right,
2 left; lesion labels (covidct.lesions): 1 ground-glass opacity, 2 consolidation. Volumes
are in cm3 (1 cm3 = 1000 mm3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from covidct.blocks import bounding_box
from covidct.lesions import DensityMeasures

RIGHT, LEFT = 1, 2
SIDES = (("right", RIGHT), ("left", LEFT))
LEVELS = ("upper", "middle", "lower")


@dataclass(frozen=True)
class Zone:
    """One third (along z) of one lung."""

    side: str            # "right" | "left"
    level: str           # "upper" | "middle" | "lower"
    lung_cm3: float
    infection_cm3: float
    percent: float       # infection / lung of this zone, 0-100
    score: int           # 0-4, see zone_score


@dataclass(frozen=True)
class Half:
    """The ventral (anterior) or dorsal (posterior) half of both lungs: the two sides of the
    coronal plane through the middle of the lungs' anterior-posterior extent."""

    name: str            # "ventral" | "dorsal"
    lung_cm3: float
    infection_cm3: float
    percent: float       # infection / lung of this half, 0-100


@dataclass(frozen=True)
class CaseMetrics:
    corona_score_cm3: float
    lung_volume_cm3: float
    right_cm3: float
    left_cm3: float
    infection_volume_cm3: float
    percent_of_lung: float
    right_percent: float
    left_percent: float
    zones: tuple[Zone, ...]
    severity_score: int  # zone-based score: sum of the six zone scores, 0-24
    ggo_volume_cm3: float = 0.0
    consolidation_volume_cm3: float = 0.0
    halves: tuple[Half, ...] = ()
    density: DensityMeasures | None = None  # PO, PHO, mean lung HU (covidct.lesions)


def _percent(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole > 0 else 0.0


def zone_score(percent: float) -> int:
    """0: no involvement, 1: < 25 %, 2: 25 to < 50 %, 3: 50 to 75 %, 4: > 75 %."""
    if percent <= 0.0:
        return 0
    if percent < 25.0:
        return 1
    if percent < 50.0:
        return 2
    if percent <= 75.0:
        return 3
    return 4


def sigma_voxels(sigma_mm: float, spacing_mm: tuple[float, float, float]) -> tuple[float, ...]:
    """A Gaussian sigma in mm as voxels along each axis (same physical blur at any spacing)."""
    return tuple(sigma_mm / float(s) for s in spacing_mm)


def infection_mask(heatmap: np.ndarray, lung_mask: np.ndarray, positive: np.ndarray,
                   spacing_mm: tuple[float, float, float], *, threshold: float,
                   sigma_mm: float, smooth_threshold: float = 0.5) -> np.ndarray:
    """The seed's 3D infection mask: threshold the maps inside the lung on positive slices,
    smooth with a 3D Gaussian (sigma in mm), threshold again, keep inside the lung. uint8 0/1.
    """
    positive = np.asarray(positive, bool)
    out = np.zeros(lung_mask.shape, dtype=np.uint8)
    zs = np.flatnonzero(positive)
    if zs.size == 0:
        return out
    candidate = np.zeros(lung_mask.shape, dtype=bool)
    for z in zs:  # per slice: no (z, y, x) float temporaries
        candidate[z] = (heatmap[z] > threshold) & (lung_mask[z] > 0)
    if not candidate.any():
        return out
    sigma = sigma_voxels(sigma_mm, spacing_mm) if sigma_mm > 0 else None
    # Filter only the candidates' bounding box grown by the kernel radius: exact, because the
    # filter pads with zeros (mode="constant") and voxels beyond the radius stay 0.
    radius = [int(3.0 * s + 0.5) for s in sigma] if sigma else [0, 0, 0]
    region = bounding_box(candidate, radius)
    field = candidate[region].astype(np.float32)
    if sigma:
        field = ndimage.gaussian_filter(field, sigma, mode="constant", truncate=3.0)
    out[region] = (field > smooth_threshold) & (lung_mask[region] > 0)
    return out


def corona_score_cm3(heatmap: np.ndarray, lung_mask: np.ndarray, positive: np.ndarray,
                     voxel_volume_mm3: float) -> float:
    """The seed's Corona score: sum of the localization maps over positive slices (inside
    the lung) times the voxel volume, in cm3."""
    zs = np.flatnonzero(np.asarray(positive, bool))
    if zs.size == 0:
        return 0.0
    total = 0.0
    for z in zs:  # per slice: no (z, y, x) temporary
        total += float(heatmap[z][lung_mask[z] > 0].sum(dtype=np.float64))
    return total * voxel_volume_mm3 / 1000.0


def _level_of_slices(z_mm: np.ndarray, present: np.ndarray) -> np.ndarray:
    """For each slice: 0 upper, 1 middle, 2 lower third of the lung's z extent (in mm)."""
    levels = np.full(z_mm.shape, -1, dtype=np.int8)
    if not present.any():
        return levels
    lo, hi = float(z_mm[present].min()), float(z_mm[present].max())
    t = (z_mm - lo) / (hi - lo) if hi > lo else np.full(z_mm.shape, 0.5)  # 0 inferior, 1 superior
    levels[present] = np.where(t[present] > 2 / 3, 0, np.where(t[present] >= 1 / 3, 1, 2))
    return levels


def anterior_posterior_axis(affine: np.ndarray) -> tuple[int, bool]:
    """(array axis closest to the patient's anterior-posterior direction, True when the
    index grows towards posterior). From the affine (voxel -> LPS), so any orientation works."""
    column = np.abs(np.asarray(affine, dtype=np.float64)[1, :3])
    axis = int(np.argmax(column))
    return axis, bool(affine[1, axis] > 0)


def halves(lung_mask: np.ndarray, infection: np.ndarray, affine: np.ndarray,
           voxel_volume_mm3: float) -> tuple[Half, Half]:
    """Ventral and dorsal halves of both lungs: split by the plane through the middle of the
    lung mask's extent along the array axis closest to anterior-posterior."""
    axis, posterior_up = anterior_posterior_axis(affine)
    present = np.flatnonzero((lung_mask > 0).any(axis=tuple(a for a in range(3) if a != axis)))
    cm3 = voxel_volume_mm3 / 1000.0
    if present.size == 0:
        return Half("ventral", 0.0, 0.0, 0.0), Half("dorsal", 0.0, 0.0, 0.0)
    cut = (int(present[0]) + int(present[-1]) + 1) // 2
    low = [slice(None)] * 3
    low[axis] = slice(0, cut)
    lung_low = lung_mask[tuple(low)] > 0
    lung_low_n = int(np.count_nonzero(lung_low))
    inf_low_n = int(np.count_nonzero(lung_low & (infection[tuple(low)] > 0)))
    lung_n = int(np.count_nonzero(lung_mask))
    inf_n = int(np.count_nonzero((infection > 0) & (lung_mask > 0)))
    first = (lung_low_n * cm3, inf_low_n * cm3)
    second = ((lung_n - lung_low_n) * cm3, (inf_n - inf_low_n) * cm3)
    ventral, dorsal = (first, second) if posterior_up else (second, first)
    return (Half("ventral", *ventral, _percent(ventral[1], ventral[0])),
            Half("dorsal", *dorsal, _percent(dorsal[1], dorsal[0])))


def measure_case(lung_mask: np.ndarray, infection: np.ndarray, z_mm: np.ndarray,
                 voxel_volume_mm3: float, corona_score: float, *,
                 lesion_labels: np.ndarray | None = None, affine: np.ndarray | None = None,
                 density: DensityMeasures | None = None) -> CaseMetrics:
    """Volumes, % involvement (total, sides, six zones, ventral/dorsal halves), the 0-24
    zone-based score and the GGO / consolidation volumes.

    z_mm: each slice's superior coordinate (Volume.slice_positions_mm()); thirds are cut
    along it, so "upper" is superior whatever the slice order. lesion_labels: (z, y, x)
    0 / 1 GGO / 2 consolidation (default: none counted); affine: voxel -> LPS, for the
    halves (default: none); density: carried into the metrics as it is.
    """
    cm3 = voxel_volume_mm3 / 1000.0
    # Per slice, voxel counts of code = lung label + 3 * infected (0..5): one pass per slice.
    counts = np.zeros((lung_mask.shape[0], 6), dtype=np.int64)
    kinds = np.zeros(3, dtype=np.int64)  # lung voxels: none, GGO, consolidation
    for z in range(lung_mask.shape[0]):
        code = lung_mask[z].astype(np.uint8) + 3 * (infection[z] > 0).astype(np.uint8)
        counts[z] = np.bincount(code.ravel(), minlength=6)[:6]
        if lesion_labels is not None:
            kinds += np.bincount(lesion_labels[z][lung_mask[z] > 0].ravel(), minlength=3)[:3]
    zones: list[Zone] = []
    side_totals: dict[str, tuple[float, float]] = {}
    for side, label in SIDES:
        lung_per_slice = counts[:, label] + counts[:, label + 3]
        inf_per_slice = counts[:, label + 3]
        levels = _level_of_slices(np.asarray(z_mm, float), lung_per_slice > 0)
        for index, level in enumerate(LEVELS):
            lung_cm3 = float(lung_per_slice[levels == index].sum()) * cm3
            inf_cm3 = float(inf_per_slice[levels == index].sum()) * cm3
            pct = _percent(inf_cm3, lung_cm3)
            zones.append(Zone(side, level, lung_cm3, inf_cm3, pct, zone_score(pct)))
        side_totals[side] = (float(lung_per_slice.sum()) * cm3, float(inf_per_slice.sum()) * cm3)
    right_lung, right_inf = side_totals["right"]
    left_lung, left_inf = side_totals["left"]
    lung_cm3 = right_lung + left_lung
    inf_cm3 = right_inf + left_inf
    return CaseMetrics(
        corona_score_cm3=float(corona_score),
        lung_volume_cm3=lung_cm3,
        right_cm3=right_lung,
        left_cm3=left_lung,
        infection_volume_cm3=inf_cm3,
        percent_of_lung=_percent(inf_cm3, lung_cm3),
        right_percent=_percent(right_inf, right_lung),
        left_percent=_percent(left_inf, left_lung),
        zones=tuple(zones),
        severity_score=int(sum(z.score for z in zones)),
        ggo_volume_cm3=float(kinds[1]) * cm3,
        consolidation_volume_cm3=float(kinds[2]) * cm3,
        halves=(halves(lung_mask, infection, affine, voxel_volume_mm3)
                if affine is not None else ()),
        density=density,
    )
