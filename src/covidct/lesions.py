"""Quantitative lesion segmentation from Hounsfield units: ground glass and consolidation.

The Gozes et al. (2020) localization (Grad-CAM maps, Corona score) says *where* the
classifier saw disease; this module measures *how much*, from the CT densities inside
the lung, on the slices and regions the classifier flagged:

1. Working grid: the lung's bounding box, averaged in-plane over f x f blocks so pixels are
   about ``working_mm`` (a light smoothing that halves the noise at f = 2), then a small 3D
   Gaussian (``smooth_sigma_mm``).
2. Vessels and airway walls: lung voxels above ``consolidation_min_hu`` (dense) that a
   per-slice binary opening of the dense lung with a disk of radius ``vessel_radius_mm``
   removes (thin bright structures: vessels and bronchial walls cut across or along, and
   the sliver of chest wall or mediastinum the lung outline takes in), grown by
   ``vessel_margin_mm`` to drop their partial-volume rims, plus the airway mask.
   Dense regions wider than the disk survive the opening: consolidation.
3. Ground-glass opacity (GGO): lung voxels, not vessel or airway, with smoothed HU in
   [``ggo_min_hu``, ``consolidation_min_hu``); consolidation: the opened dense region.
   Ranges: GGO -750..-300 HU, consolidation > -300 HU, as used in quantitative COVID-19
   CT (e.g. Chaganti et al., Radiol Artif Intell 2020;2:e200048; Lessmann et al.,
   Radiology 2021;298:E18-E28).
4. Normal dependent (posterior) density: the GGO threshold is raised, per slice and per
   band of depth from anterior to posterior, to ``dependent_margin_hu`` above the band's
   normal parenchyma (its ``baseline_quantile`` HU quantile), so the denser dependent lung
   of a supine patient is not called disease.
5. Gate by the classifier: a 3D component of GGO/consolidation (at least
   ``min_component_mm3``) is kept when it reaches a positive slice where the fused
   Grad-CAM map exceeds ``heatmap_min``; nothing is kept when no slice is positive.

Density measures (Chaganti et al. 2020), inside the lung with vessels and airways
excluded (the "parenchyma"): percentage of opacity PO = 100 x lesion / parenchyma volume;
percentage of high opacity PHO = 100 x lesion voxels above -200 HU / parenchyma volume;
mean lung HU = mean smoothed HU of the parenchyma. They are computed on the working grid;
the GGO and consolidation volumes come from the mask on the input grid.

Arrays are (z, y, x), spacing (dz, dy, dx) in mm; lung labels 1 right, 2 left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from covidct.blocks import Factors, block_reduce, block_upsample, bounding_box

GGO, CONSOLIDATION = 1, 2
LABEL_NAMES = {GGO: "ground-glass opacity", CONSOLIDATION: "consolidation"}
HIGH_OPACITY_MIN_HU = -200.0   # PHO (Chaganti et al. 2020)


@dataclass(frozen=True)
class LesionParams:
    """Settings of the HU lesion segmentation (densities in HU, lengths in mm)."""

    ggo_min_hu: float = -750.0
    consolidation_min_hu: float = -300.0
    high_opacity_min_hu: float = HIGH_OPACITY_MIN_HU
    working_mm: float = 1.4
    working_z_mm: float = 2.5
    smooth_sigma_mm: float = 0.7
    vessel_radius_mm: float = 3.0
    vessel_margin_mm: float = 0.7
    dependent_margin_hu: float = 150.0
    baseline_quantile: float = 0.25
    depth_bands: int = 4
    baseline_slab_mm: float = 40.0
    min_component_mm3: float = 30.0
    heatmap_min: float = 0.0
    tube_sigmas_mm: tuple[float, ...] = (2.5, 4.5)
    tube_share: float = 0.5
    vessel_margin_z: bool = True
    evidence_share: float = 0.0
    ggo_core_mm: float = 2.1
    tophat_hu: float = 200.0
    fat_max_hu: float | None = -100.0
    gate_margin_mm: float = 0.0


@dataclass(frozen=True)
class DensityMeasures:
    """Density measures inside the lung parenchyma (lung minus vessels and airways)."""

    parenchyma_cm3: float
    percent_opacity: float        # PO, 0-100
    percent_high_opacity: float   # PHO, 0-100 (lesion voxels above -200 HU)
    mean_lung_hu: float           # NaN when there is no parenchyma


@dataclass(frozen=True)
class LesionResult:
    labels: np.ndarray            # uint8 (z, y, x): 0 none, 1 GGO, 2 consolidation
    density: DensityMeasures


def density_measures(hu: np.ndarray, parenchyma: np.ndarray, lesion: np.ndarray,
                     voxel_volume_mm3: float, *,
                     high_opacity_min_hu: float = HIGH_OPACITY_MIN_HU) -> DensityMeasures:
    """PO, PHO and mean HU of ``hu`` over the boolean ``parenchyma`` (same shape).

    lesion: bool, the opacities (counted only inside the parenchyma). PO = 100 x |lesion| /
    |parenchyma|; PHO = 100 x |lesion and hu > high_opacity_min_hu| / |parenchyma|
    (Chaganti et al., Radiol Artif Intell 2020). Percentages are 0 and the mean NaN when the
    parenchyma is empty.
    """
    par = np.asarray(parenchyma, bool)
    n = int(np.count_nonzero(par))
    if n == 0:
        return DensityMeasures(0.0, 0.0, 0.0, float("nan"))
    values = np.asarray(hu)[par]
    inside = np.asarray(lesion, bool)[par]
    opacity = int(np.count_nonzero(inside))
    high = int(np.count_nonzero(inside & (values > high_opacity_min_hu)))
    return DensityMeasures(
        parenchyma_cm3=n * voxel_volume_mm3 / 1000.0,
        percent_opacity=100.0 * opacity / n,
        percent_high_opacity=100.0 * high / n,
        mean_lung_hu=float(values.mean(dtype=np.float64)),
    )


def _box(mask: np.ndarray, factors: Factors) -> tuple[slice, slice, slice]:
    """Bounding box of mask, each side rounded up to a multiple of its factor (kept inside
    the array where it is large enough; _block pads what is left)."""
    out = []
    for axis in range(3):
        idx = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        f = factors[axis]
        hi = lo + -(-(hi - lo) // f) * f
        if hi > mask.shape[axis]:
            lo, hi = max(mask.shape[axis] - (hi - lo), 0), mask.shape[axis]
        out.append(slice(lo, hi))
    return tuple(out)  # type: ignore[return-value]


def _disk(radius_px: float, depth: int = 1) -> np.ndarray:
    """In-plane disk structuring element (depth slices thick)."""
    r = max(int(np.floor(radius_px)), 1)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    disk = yy * yy + xx * xx <= radius_px * radius_px + 1e-6
    return np.repeat(disk[None], depth, axis=0)


def _dependent_floor(smooth: np.ndarray, aerated: np.ndarray, depth: np.ndarray,
                     slab: int, params: LesionParams) -> np.ndarray:
    """The GGO floor per slab of ``slab`` slices and anterior-posterior depth band,
    (z, y, x) float32.

    depth: (y, x) in [0, 1), 0 anterior. A cell's floor is max(ggo_min_hu, its normal
    parenchyma + dependent_margin_hu), the normal parenchyma being the cell's
    baseline_quantile of aerated lung HU (aerated lung dominates each cell even in severe
    pneumonia, and its low quantile is the normal density there); cells with too few
    aerated voxels take the band's level over the whole lung."""
    nb = params.depth_bands
    bands = np.minimum((depth * nb).astype(np.int32), nb - 1)
    masks = [bands == b for b in range(nb)]

    def level(values: np.ndarray, default: float) -> float:
        if values.size < 200:
            return default
        base = float(np.quantile(values, params.baseline_quantile))
        return max(params.ggo_min_hu, base + params.dependent_margin_hu)

    whole = [level(smooth[:, m][aerated[:, m]], params.ggo_min_hu) for m in masks]
    floor = np.empty(smooth.shape, dtype=np.float32)
    for z0 in range(0, smooth.shape[0], slab):
        cells = np.array([level(smooth[z0:z0 + slab, m][aerated[z0:z0 + slab, m]], whole[b])
                          for b, m in enumerate(masks)], dtype=np.float32)
        floor[z0:z0 + slab] = cells[bands]
    return floor


def _tubular(smooth: np.ndarray, candidate: np.ndarray, spacing_w: tuple[float, float, float],
             sigmas_mm: tuple[float, ...]) -> np.ndarray:
    """Bool (z, y, x): candidate voxels where the Hessian of the smoothed image says bright
    tube (two strongly negative eigenvalues of similar size, the third under a quarter of
    them; Frangi et al., MICCAI 1998), at any of the scales. Computed on a grid coarsened
    2 x in-plane, within the candidate's bounding box grown by 3 sigma. Meant for the cores
    of dense regions (voxels at least the opening radius inside): at a blob's edge the
    Hessian looks tubular too, at its core it does not (measured on spheres, cylinders and
    plates: tests/test_lesions.py)."""
    factors = (1, 2, 2)
    sp = (spacing_w[0], 2 * spacing_w[1], 2 * spacing_w[2])
    pad = [int(np.ceil(3 * max(sigmas_mm) / s)) * f for s, f in zip(sp, factors, strict=True)]
    region = bounding_box(candidate, pad)
    coarse = block_reduce(smooth[region], factors, "mean")
    where = np.nonzero(block_reduce(candidate[region], factors, "any"))
    tube_c = np.zeros(coarse.shape, dtype=bool)
    for sigma_mm in sigmas_mm:
        sig = tuple(sigma_mm / s for s in sp)
        hess = np.empty((where[0].size, 3, 3), dtype=np.float32)
        for i in range(3):
            for j in range(i, 3):
                order = [0, 0, 0]
                order[i] += 1
                order[j] += 1
                d = ndimage.gaussian_filter(coarse, sig, order=order, truncate=3.0)
                hess[:, i, j] = hess[:, j, i] = d[where] * (sigma_mm ** 2 / (sp[i] * sp[j]))
        ev = np.linalg.eigvalsh(hess)
        ev = np.take_along_axis(ev, np.argsort(np.abs(ev), axis=1), axis=1)
        l1, l2, l3 = np.abs(ev[:, 0]), ev[:, 1], ev[:, 2]  # |l1| <= |l2| <= |l3|
        tube_c[where] |= ((l2 < 0) & (l3 < 0) & (-l2 >= 0.5 * -l3) & (l1 <= -0.25 * l2)
                          & (-l3 >= 50.0))
    out = np.zeros(candidate.shape, dtype=bool)
    out[region] = block_upsample(tube_c, factors, candidate[region].shape)
    return out & candidate


def _depth_map(affine: np.ndarray, box: tuple[slice, slice, slice], factors: Factors,
               shape_w: tuple[int, int]) -> np.ndarray:
    """(y, x) on the working grid: posterior coordinate (LPS y) scaled to [0, 1) over the box
    (0 anterior). Uses the affine, so any in-plane orientation of the array is handled."""
    fy, fx = factors[1], factors[2]
    j = box[1].start + fy * np.arange(shape_w[0]) + (fy - 1) / 2.0
    i = box[2].start + fx * np.arange(shape_w[1]) + (fx - 1) / 2.0
    p = affine[1, 1] * j[:, None] + affine[1, 2] * i[None, :]
    lo, hi = float(p.min()), float(p.max())
    return (p - lo) / (hi - lo + 1e-9) * 0.999999 if hi > lo else np.zeros_like(p)


def _label_medians(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """(n + 1,) median of values per label 1..n (+inf where a label has no value)."""
    order = np.lexsort((values, labels))
    labels, values = labels[order], values[order]
    counts = np.bincount(labels, minlength=n + 1)
    starts = np.cumsum(counts) - counts
    out = np.full(n + 1, np.inf, dtype=np.float64)
    has = counts > 0
    out[has] = values[starts[has] + (counts[has] - 1) // 2]
    return out


def working_factors(spacing_mm: tuple[float, float, float], working_mm: float,
                    working_z_mm: float | None = None) -> Factors:
    """Integer block sizes along (z, y, x) that bring the spacing nearest working_mm
    (working_z_mm along z when given)."""
    target = (working_z_mm or working_mm, working_mm, working_mm)
    # in-plane: the nearest integer; along z: round down unless within a quarter above
    bias = (0.25, 0.5, 0.5)
    return tuple(max(1, int(np.floor(t / float(s) + b)))  # type: ignore[return-value]
                 for t, s, b in zip(target, spacing_mm, bias, strict=True))


def segment_lesions(hu: np.ndarray, lung_mask: np.ndarray, airway_mask: np.ndarray | None,
                    heatmap: np.ndarray, positive: np.ndarray, affine: np.ndarray,
                    spacing_mm: tuple[float, float, float],
                    params: LesionParams | None = None) -> LesionResult:
    """GGO and consolidation inside the lung, gated by the classifier's positive slices.

    hu: (z, y, x) HU; lung_mask: uint8 (1 right, 2 left); airway_mask: bool or None;
    heatmap: fused Grad-CAM (z, y, x) in [0, 1]; positive: (z,) bool; affine: voxel -> LPS
    (for the anterior-posterior direction). Returns labels (uint8, 0/1/2, inside the lung)
    and the density measures. The input arrays are not modified.
    """
    p = params or LesionParams()
    labels = np.zeros(lung_mask.shape, dtype=np.uint8)
    lung_any = lung_mask > 0
    if not lung_any.any():
        return LesionResult(labels, DensityMeasures(0.0, 0.0, 0.0, float("nan")))
    factors = working_factors(spacing_mm, p.working_mm, p.working_z_mm)
    box = _box(lung_any, factors)
    spacing_w = tuple(float(s) * f for s, f in zip(spacing_mm, factors, strict=True))
    wz, wy, wx = spacing_w
    voxel_w = wz * wy * wx

    lung_full = lung_any[box]
    lung_w = block_reduce(lung_full, factors, "majority")
    smooth = block_reduce(hu[box], factors, "mean")
    if p.smooth_sigma_mm > 0:
        smooth = ndimage.gaussian_filter(smooth, tuple(p.smooth_sigma_mm / s for s in spacing_w),
                                         truncate=2.5)
    dense = smooth >= p.consolidation_min_hu
    disk = _disk(p.vessel_radius_mm / min(wy, wx))
    # centres of disks that fit in the dense lung: the chest wall, mediastinum and
    # diaphragm are dense and thick too, and the lung mask's outline runs a pixel or two
    # into them; disks centred there would call that sliver consolidation
    core = ndimage.binary_erosion(dense & lung_w, structure=disk)
    opened = ndimage.binary_dilation(core, structure=disk) & lung_w
    core &= opened
    if p.tube_sigmas_mm and core.any():  # large vessels (hilum) survive the opening
        comp, n = ndimage.label(opened)
        tube = _tubular(smooth, core, spacing_w, p.tube_sigmas_mm)
        share = (np.bincount(comp[tube], minlength=n + 1)
                 / np.maximum(np.bincount(comp[core], minlength=n + 1), 1))
        vessel = share > p.tube_share
        # fat (-190..-30 HU) of the mediastinum, pericardium or diaphragm inside the lung
        # mask: consolidation is water / soft-tissue dense (about 0..+60 HU)
        if p.fat_max_hu is not None:
            vessel |= _label_medians(smooth[opened], comp[opened], n) <= p.fat_max_hu
        vessel[0] = False
        opened &= ~vessel[comp]
    # thin dense structures in the lung (vessels, bronchial walls), dense tissue outside it
    # (chest wall, mediastinum) and the airway, grown by their partial-volume rim
    thin = dense & ~opened
    if p.tophat_hu > 0:  # white top-hat: narrower than the disk and brighter than around it
        tophat = smooth - ndimage.grey_opening(smooth, footprint=disk)
        thin |= (tophat > p.tophat_hu) & ~opened
    if airway_mask is not None:
        thin |= block_reduce(airway_mask[box], factors, "majority")
    rim = _disk(max(p.vessel_margin_mm / min(wy, wx), 1.0), depth=3 if p.vessel_margin_z else 1)
    excluded = ndimage.binary_dilation(thin, structure=rim) & ~opened
    parenchyma = lung_w & ~thin  # the density measures' lung: vessels and airways out

    depth = _depth_map(np.asarray(affine, float), box, factors, smooth.shape[1:])
    slab = max(1, int(round(p.baseline_slab_mm / wz)))
    floor = (_dependent_floor(smooth, lung_w & ~dense, depth, slab, p)
             if p.dependent_margin_hu > 0 else np.float32(p.ggo_min_hu))
    ggo = lung_w & ~excluded & ~dense & (smooth >= floor)  # rims out too
    candidate = ggo | opened
    # a lesion holds a patch at least 2 x ggo_core_mm wide: blurred vessels and the rims of
    # vessels, fissures and airway walls are thinner everywhere
    seeds = candidate
    if p.ggo_core_mm > 0:
        seeds = opened | ndimage.binary_opening(ggo, structure=_disk(p.ggo_core_mm / min(wy, wx)))

    kept = _gate(candidate, seeds, heatmap, positive, box, factors, voxel_w, spacing_w, p)
    lab_w = np.zeros(smooth.shape, dtype=np.uint8)
    lab_w[kept & ggo] = GGO
    lab_w[kept & opened] = CONSOLIDATION
    density = density_measures(smooth, parenchyma, lab_w > 0, voxel_w,
                               high_opacity_min_hu=p.high_opacity_min_hu)
    labels[box] = np.where(lung_full, block_upsample(lab_w, factors, lung_full.shape), 0)
    return LesionResult(labels, density)


def _gate(candidate: np.ndarray, seeds: np.ndarray, heatmap: np.ndarray, positive: np.ndarray,
          box: tuple[slice, slice, slice], factors: Factors, voxel_w_mm3: float,
          spacing_w: tuple[float, float, float], p: LesionParams) -> np.ndarray:
    """The candidate's 3D components of at least min_component_mm3 that hold a seed voxel
    and reach the evidence: positive slices (grown by gate_margin_mm along z) where
    heatmap > heatmap_min, on at least evidence_share of their voxels there."""
    fz, fy, fx = factors
    pos_full = np.asarray(positive, bool)[box[0]]
    pos_full = np.pad(pos_full, (0, -pos_full.size % fz))
    pos = pos_full.reshape(-1, fz).any(axis=1)[:candidate.shape[0]]
    if p.gate_margin_mm > 0:
        grow = int(round(p.gate_margin_mm / spacing_w[0]))
        pos = ndimage.binary_dilation(pos, iterations=grow) if grow else pos
    if not pos.any() or not candidate.any():
        return np.zeros(candidate.shape, dtype=bool)
    comp, n = ndimage.label(candidate)
    sizes = np.bincount(comp.ravel(), minlength=n + 1)
    hits = np.zeros(n + 1, dtype=np.int64)
    heat = heatmap[box]
    for k in np.flatnonzero(pos):
        h = heat[min(k * fz, heat.shape[0] - 1)][::fy, ::fx]
        h = h[:candidate.shape[1], :candidate.shape[2]]
        hit = comp[k][:h.shape[0], :h.shape[1]][h > p.heatmap_min]
        hits += np.bincount(hit, minlength=n + 1)
    evidence = (hits > 0) & (hits >= p.evidence_share * sizes)
    evidence[0] = False
    seeded = np.bincount(comp[seeds], minlength=n + 1) > 0
    keep = evidence & seeded & (sizes * voxel_w_mm3 >= p.min_component_mm3)
    return keep[comp]
