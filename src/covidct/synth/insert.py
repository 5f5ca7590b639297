"""Insert COVID-19 pneumonia lesions into a real chest CT, with an exact truth mask.

    case = insert_lesions(volume, lung_mask, np.random.default_rng(0), InsertionParams())
    case.volume      # new Volume, same grid and dtype; `volume` itself is not modified
    case.mask        # uint8 (z, y, x): 0 none, 1 ground glass (incl. crazy paving), 2 consolidation
    case.lesions     # one InsertedLesion per focus (type, centre LPS mm, cm3, side)

Lesion model (HU values and appearance from Pan et al., Radiology 2020;295:715-721 and
Chung et al., Radiology 2020;295:202-207; distribution -- bilateral, multifocal,
peripheral/subpleural, posterior and lower-lobe predominance -- from Bernheim et al.,
Radiology 2020;295:200463 and Chung et al.):

* Foci. 1-10 centres are drawn inside the lung, 10-30 mm from its surface (distance
  transform of the lung mask), weighted towards the chest wall and the posterior pleura,
  towards posterior (dorsal) and lower (basal) positions; both lungs get foci when the case
  has more than one. Each focus is an ellipsoid of radius r_i (mm) whose level
  ``P_i = r_i - d_i + lobulation * r_i * N`` is perturbed by a smooth noise field N
  (Gaussian-filtered white noise, sigma ~6 mm): thresholding it gives irregular, lobulated
  patches. P = max_i P_i; the focus giving the max owns the voxel.
* Severity (target fraction of the lung involved, e.g. 0.005-0.5). The focus volumes split
  severity x lung volume (Dirichlet weights); then one offset t (mm) is chosen so that the
  number of eligible voxels with ``P - t >= truth_f * edge_mm`` is exactly severity x the
  number of lung voxels: the achieved fraction matches the target up to rounding.
* Ground glass (GGO): a partial-volume rise that leaves vessels visible. With the blending
  factor ``f = min(clip((P - t) / edge_mm, 0, 1), peak_f)`` (0 outside, a ramp over
  edge_mm, a per-focus peak 0.6-0.95 in the core) and a per-focus target HU (-500..-300,
  +/- a smooth 4 mm texture field of SD 40 HU):
  ``new = hu + f * max(target - base, 0)``, ``base = keep * ref + (1 - keep) * hu``, only
  where ``hu < parenchyma_max_hu`` (-300: aerated parenchyma); vessels, fissures and walls
  (>= -300 HU) are untouched. ``ref`` is the local parenchymal background (normalised
  Gaussian, 3 mm, of voxels < -650 HU); keep = 0.6 of the rise is taken from it, so small,
  partial-volume vessels and interstitium keep their contrast (keep = 0 is the plain blend
  ``hu + f (target - hu)``). Results are capped at max(hu, -200).
* Noise: the blend removes (1 - keep) f of the image noise, so noise of SD
  ``sigma * sqrt(1 - (1 - a)^2)``, a = (1 - keep) f (1 in consolidation), is added back,
  sigma being the local image noise
  estimated from the lung parenchyma as the robust SD (1.4826 MAD / 0.97) of
  ``hu - median3x3(hu)``.
* Crazy paving (a share of the GGO foci): GGO plus a thin reticular network (interlobular
  septal thickening): the zero crossings of band-pass noise (difference of Gaussians,
  cells ~5-10 mm, lines ~1 mm) get ``+septa_hu * f`` (100-200 HU). Counted as GGO (label 1).
* Consolidation (a share of the foci, more in severe cases): inside the focus core (depth
  beyond a random fraction of the focus's maximum depth) the HU goes to soft tissue
  (-100..+50) over a 2 mm ramp; native airways (Gaussian-smoothed HU < airway_max_hu,
  -950 by default: -900 flags normal low-density parenchyma on 0.7 mm LIDC images) keep
  their values, and 1-3 thin branching tubes per core are drawn as air bronchograms
  (HU set to <= -900). Voxels with consolidation weight >= 0.5 are labelled 2.
* Truth: a voxel is in the mask exactly when its value was changed: inside the lung mask,
  ``hu < parenchyma_max_hu``, ``f >= truth_f`` (0.15: the truth boundary; voxels below it
  are left untouched, so the lesion edge starts with a rise of ~0.15 x (target - hu),
  about 70 HU on -850 HU lung) and a different value after rounding to whole HU (the
  output holds whole HU in the changed voxels, so an int16 file keeps the truth exact).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from covidct.blocks import bounding_box
from covidct.errors import ConfigError, InputError
from covidct.synth.geometry import smooth_noise
from covidct.volume import Volume

logger = logging.getLogger(__name__)

__all__ = ["InsertedCase", "InsertedLesion", "InsertionParams", "estimate_noise_hu",
           "insert_lesions", "lung_sides", "inserted_truth"]

GGO, CONSOLIDATION = 1, 2
_AIRWAY_LABEL = 3  # label 3 of a lung mask (extrapulmonary airway) is not lung


@dataclass(frozen=True)
class InsertionParams:
    """How lesions are inserted (lengths in mm, densities in HU, fractions in 0..1)."""

    severity: float = 0.05  # target fraction of the lung involved (changed voxels / lung)
    n_foci: tuple[int, int] = (1, 10)  # number of foci, drawn uniformly in [lo, hi]
    min_focus_cm3: float = 2.0  # fewer foci when severity x lung volume is small
    ggo_target_hu: tuple[float, float] = (-500.0, -300.0)
    ggo_texture_hu: float = 40.0  # SD of the smooth spatial variation of the GGO target
    ggo_peak_f: tuple[float, float] = (0.6, 0.95)  # per-focus maximum blending factor
    structure_keep: float = 0.6  # share of the fine structure (small vessels) kept in GGO
    background_mm: float = 3.0  # Gaussian sigma of the local parenchymal background
    parenchyma_max_hu: float = -300.0  # only voxels below this (aerated lung) change
    edge_mm: float = 5.0  # width of the 0 -> 1 ramp of the GGO blending factor
    truth_f: float = 0.15  # truth boundary: voxels with f below it are not changed
    lobulation: float = 0.35  # amplitude of the shape noise, relative to the focus radius
    shape_noise_mm: float = 6.0  # correlation length (Gaussian sigma) of the shape noise
    subpleural_mm: tuple[float, float] = (10.0, 30.0)  # focus centres' pleural distance
    posterior_weight: float = 1.5  # centre weight exp(w * posterior position in 0..1)
    lower_weight: float = 1.0  # centre weight exp(w * lower position in 0..1)
    crazy_paving_probability: float = 0.3  # share of GGO foci with septal thickening
    septa_hu: tuple[float, float] = (100.0, 200.0)
    septa_cell_mm: float = 5.0  # band-pass scale of the reticular network
    septa_width: float = 0.15  # line half-width, in band-pass SDs
    consolidation_probability: tuple[float, float] = (0.15, 0.7)  # at severity 0 and >= 0.3
    consolidation_hu: tuple[float, float] = (-100.0, 50.0)
    consolidation_edge_mm: float = 2.0
    airway_max_hu: float = -950.0  # smoothed HU below this: native airway, kept in cores
    bronchogram_hu: float = -900.0
    add_noise: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.severity < 1.0:
            raise ConfigError(f"severity is the fraction of the lung involved, in (0, 1); got "
                              f"{self.severity}. Use e.g. 0.005 (0.5 %) to 0.5 (50 %).")
        lo, hi = self.n_foci
        if lo < 1 or hi < lo:
            raise ConfigError(f"n_foci must be (lo, hi) with 1 <= lo <= hi; got {self.n_foci}.")
        if not 0.0 < self.truth_f < 1.0:
            raise ConfigError(f"truth_f must lie in (0, 1); got {self.truth_f}.")
        if self.edge_mm <= 0 or self.consolidation_edge_mm <= 0:
            raise ConfigError("edge_mm and consolidation_edge_mm must be > 0.")


@dataclass(frozen=True)
class InsertedLesion:
    """One inserted focus: `kind` 'ggo' | 'crazy_paving' | 'consolidation' (GGO with a
    consolidated core); centre in LPS mm; volume of its truth voxels in cm3; lung side."""

    kind: str
    centre_lps_mm: tuple[float, float, float]
    volume_cm3: float
    side: str  # 'right' | 'left'
    radius_mm: float

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "centre_lps_mm": list(self.centre_lps_mm),
                "volume_cm3": self.volume_cm3, "side": self.side, "radius_mm": self.radius_mm}


@dataclass(frozen=True)
class InsertedCase:
    """A CT with inserted lesions: `mask` (uint8, volume grid) 0 none, 1 GGO, 2 consolidation."""

    volume: Volume
    mask: np.ndarray
    lesions: tuple[InsertedLesion, ...]
    severity_target: float
    involved_fraction: float  # mask voxels / lung voxels
    noise_hu: float  # the parenchymal noise SD estimated and matched


def lung_sides(lung_mask: np.ndarray, volume: Volume) -> np.ndarray:
    """uint8 lung mask 1 right, 2 left from a label map (labels > 0 lung, 3 airway is not).

    Labels 1 and 2 are kept as right/left when both are present and no other lung label
    is; otherwise the lung is split at the midline of its x extent (patient LPS x).
    """
    labels = np.asarray(lung_mask)
    if labels.shape != volume.shape:
        raise InputError(f"The lung mask has shape {labels.shape} but the CT has "
                         f"{volume.shape}; give a mask on the CT's voxel grid.")
    labels = np.rint(labels).astype(np.int64) if labels.dtype.kind == "f" else labels
    lung = (labels > 0) & (labels != _AIRWAY_LABEL)
    present = set(np.unique(labels[lung]).tolist())
    if present == {1, 2}:
        return np.where(lung, labels, 0).astype(np.uint8)
    out = np.zeros(labels.shape, dtype=np.uint8)
    if not lung.any():
        return out
    idx = np.nonzero(lung)
    x = volume.affine[0, 0] * idx[0] + volume.affine[0, 1] * idx[1] + volume.affine[0, 2] * idx[2]
    mid = 0.5 * (float(x.min()) + float(x.max()))
    out[idx] = np.where(x < mid, 1, 2)  # LPS x grows towards the patient's left
    return out


def estimate_noise_hu(hu: np.ndarray, lung: np.ndarray, parenchyma_max_hu: float = -300.0,
                      max_slices: int = 12) -> float:
    """Image noise SD (HU) in the lung parenchyma: robust SD of ``hu - median3x3(hu)``.

    1.4826 x MAD of the residual over parenchyma voxels (lung, HU below
    parenchyma_max_hu) of up to `max_slices` evenly spaced slices, divided by 0.97 (the
    residual SD of white noise after a 3x3 median). Returns 10 HU when there is no lung.
    """
    zs = np.nonzero(lung.any(axis=(1, 2)))[0]
    if zs.size == 0:
        return 10.0
    residuals = []
    for k in zs[np.linspace(0, zs.size - 1, min(max_slices, zs.size)).astype(int)]:
        s = np.asarray(hu[k], dtype=np.float32)
        par = ndimage.binary_erosion(lung[k]) & (s < parenchyma_max_hu)
        if par.sum() < 50:
            continue
        residuals.append((s - ndimage.median_filter(s, 3))[par])
    if not residuals:
        return 10.0
    r = np.concatenate(residuals)
    mad = float(np.median(np.abs(r - np.median(r))))
    return max(1.4826 * mad / 0.97, 1.0)


def _upsample(coarse: np.ndarray, factors: tuple[int, int, int], shape: tuple[int, ...],
              order: int) -> np.ndarray:
    """A field sampled at every `factors`-th voxel back onto the full grid (linear/nearest)."""
    matrix = np.array([1.0 / f for f in factors])
    return ndimage.affine_transform(coarse, matrix, output_shape=shape, order=order,
                                    mode="nearest", prefilter=False)


def _draw_centres(rng: np.random.Generator, weights: np.ndarray, sides: np.ndarray,
                  dist_mm: np.ndarray, radii_mm: np.ndarray, band_mm: tuple[float, float]
                  ) -> np.ndarray:
    """Indices (into the flat candidate arrays) of one centre per radius; both sides
    when there are >= 2 foci.

    A focus of radius r gets a centre at a pleural distance in
    [band_lo, clip(0.8 r, band_lo, band_hi)] so small foci hug the pleura and large ones
    reach it; closest-to-the-band candidates when none lies in the band.
    """
    have = [s for s in (1, 2) if (weights[sides == s] > 0).any()]
    order = list(rng.permutation(have)) if have else []
    chosen = []
    for i, r in enumerate(radii_mm):
        hi = float(np.clip(0.8 * r, band_mm[0], band_mm[1]))
        w = weights * ((dist_mm >= band_mm[0]) & (dist_mm <= hi))
        if w.sum() <= 0:
            w = weights * (np.abs(dist_mm - band_mm[0]) <= np.quantile(
                np.abs(dist_mm - band_mm[0]), 0.2))
        if len(order) == 2 and (w[sides == order[i % 2]] > 0).any():
            w = w * (sides == order[i % 2])
        if w.sum() <= 0:
            w = weights + 1e-12
        chosen.append(int(rng.choice(w.size, p=w / w.sum())))
    return np.asarray(chosen, dtype=np.int64)


def _tube(shape: tuple[int, ...], spacing: np.ndarray, points_mm: list[np.ndarray],
          radius_mm: float) -> np.ndarray:
    """Voxels within radius_mm of a polyline (points in the box's mm frame)."""
    out = np.zeros(shape, dtype=bool)
    pad = radius_mm + 1e-6
    for a, b in zip(points_mm[:-1], points_mm[1:], strict=True):
        lo = np.maximum(np.floor((np.minimum(a, b) - pad) / spacing).astype(int), 0)
        hi = np.minimum(np.ceil((np.maximum(a, b) + pad) / spacing).astype(int) + 1,
                        np.array(shape))
        if np.any(hi <= lo):
            continue
        grids = np.meshgrid(*[np.arange(lo[d], hi[d]) * spacing[d] for d in range(3)],
                            indexing="ij")
        p = np.stack(grids, axis=-1)
        ab = b - a
        t = np.clip(((p - a) @ ab) / max(float(ab @ ab), 1e-9), 0.0, 1.0)
        d = np.linalg.norm(p - (a + t[..., None] * ab), axis=-1)
        out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] |= d <= radius_mm
    return out


def _bronchogram_paths(rng: np.random.Generator, start_mm: np.ndarray, length_mm: float
                       ) -> list[list[np.ndarray]]:
    """1-3 branching random-walk polylines (mm) from a consolidation core's centre."""
    paths = []
    for _ in range(int(rng.integers(1, 4))):
        direction = rng.normal(size=3)
        direction[0] *= 1.5  # bronchi of the lower lobes run mostly cranio-caudally
        pts = [start_mm.copy()]
        step = max(length_mm / 5.0, 1.5)
        for _ in range(5):
            direction = direction / np.linalg.norm(direction) + rng.normal(0, 0.12, 3)
            pts.append(pts[-1] + step * direction / np.linalg.norm(direction))
        paths.append(pts)
        branch_from = pts[int(rng.integers(1, 4))]
        bdir = rng.normal(size=3)
        paths.append([branch_from, branch_from + 2 * step * bdir / np.linalg.norm(bdir)])
    return paths


def insert_lesions(volume: Volume, lung_mask: np.ndarray, rng: np.random.Generator,
                   params: InsertionParams | None = None) -> InsertedCase:
    """Insert COVID-19 GGO / crazy paving / consolidation foci into `volume`'s lungs.

    volume: CT in HU, (z, y, x); not modified. lung_mask: (z, y, x) label map on the same
    grid (labels > 0 lung, 1 right / 2 left; label 3, airway, is not lung). rng: the only
    source of randomness (same state -> same output). See the module docstring for the
    model. Returns the new Volume (input dtype; changed voxels hold whole HU), the truth
    mask (uint8 0/1/2, exactly the changed voxels, inside the lung) and one record per focus.
    """
    p = params or InsertionParams()
    sides_full = lung_sides(lung_mask, volume)
    lung = sides_full > 0
    n_lung = int(lung.sum())
    min_voxels = 1000.0 / volume.voxel_volume_mm3  # 1 cm3
    if n_lung < min_voxels:
        raise InputError(f"The lung mask holds {n_lung} voxels (< 1 cm3): no lung to insert "
                         "lesions into. Check the mask (labels > 0 lung) or the CT.")
    hu_in = np.asarray(volume.hu)
    spacing = np.asarray(volume.spacing_mm, dtype=np.float64)
    box = bounding_box(lung)
    sub = hu_in[box].astype(np.float32)
    lung_b, sides_b = lung[box], sides_full[box]
    offset = np.array([s.start for s in box], dtype=np.float64)
    noise_hu = estimate_noise_hu(hu_in, lung, p.parenchyma_max_hu)

    # --- coarse grid (~3 mm): distance to the pleura, centre weights, focus shapes -------
    factors = tuple(max(1, int(round(3.0 / s))) for s in spacing)
    fz, fy, fx = factors
    lung_c = lung_b[::fz, ::fy, ::fx]
    sides_c = sides_b[::fz, ::fy, ::fx]
    step_c = spacing * np.array(factors)
    dist_c = ndimage.distance_transform_edt(np.pad(lung_c, 1), sampling=step_c)[1:-1, 1:-1, 1:-1]
    cidx = np.nonzero(lung_c)
    vox = np.stack(cidx, axis=1) * np.array(factors) + offset  # full-grid (k, j, i)
    lps = vox @ volume.affine[:3, :3].T + volume.affine[:3, 3]
    post = (lps[:, 1] - lps[:, 1].min()) / max(float(np.ptp(lps[:, 1])), 1e-6)
    low = 1.0 - (lps[:, 2] - lps[:, 2].min()) / max(float(np.ptp(lps[:, 2])), 1e-6)
    mid_x = 0.5 * (lps[:, 0].min() + lps[:, 0].max())
    lat = np.abs(lps[:, 0] - mid_x) / max(float(np.abs(lps[:, 0] - mid_x).max()), 1e-6)
    d = dist_c[cidx]
    periph = np.maximum(lat, post)  # near the costal or posterior pleura, not the mediastinum
    weights = ((0.1 + periph) ** 3 * np.exp(p.posterior_weight * post)
               * np.exp(p.lower_weight * low))
    lung_cm3 = n_lung * volume.voxel_volume_mm3 / 1000.0
    total_cm3 = p.severity * lung_cm3
    n = int(rng.integers(p.n_foci[0], p.n_foci[1] + 1))
    n = max(1, min(n, int(total_cm3 / p.min_focus_cm3)))
    share = rng.dirichlet(np.full(n, 1.5))
    radii = (3.0 * share * total_cm3 * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0)
    centres = _draw_centres(rng, weights, sides_c[cidx], d, radii, p.subpleural_mm)
    shape_noise = smooth_noise(rng, lung_c.shape, tuple(p.shape_noise_mm / step_c))
    texture = smooth_noise(rng, lung_c.shape, tuple(4.0 / step_c))
    core_noise = smooth_noise(rng, lung_c.shape, tuple(8.0 / step_c))
    coords = [np.arange(lung_c.shape[a], dtype=np.float32)[tuple(
        slice(None) if b == a else None for b in range(3))] * float(step_c[a]) for a in range(3)]
    level_c = np.full(lung_c.shape, -1e4, dtype=np.float32)
    owner_c = np.zeros(lung_c.shape, dtype=np.int16)
    for i, (c, r) in enumerate(zip(centres, radii, strict=True)):
        centre = np.array([cidx[a][c] for a in range(3)]) * step_c
        axes = np.exp(rng.normal(0.0, 0.2, 3))
        axes /= np.prod(axes) ** (1 / 3)
        dd = np.sqrt(sum(((coords[a] - centre[a]) / axes[a]) ** 2 for a in range(3)))
        level = r - dd + p.lobulation * r * shape_noise
        better = level > level_c
        level_c[better] = level[better]
        owner_c[better] = i + 1
    level_f = _upsample(level_c, factors, sub.shape, order=1)
    owner_f = _upsample(owner_c, factors, sub.shape, order=0)
    texture_f = _upsample(texture, factors, sub.shape, order=1)
    core_f = _upsample(core_noise, factors, sub.shape, order=1)

    # --- calibrate the offset t so that exactly severity x lung voxels are involved -----
    eligible = lung_b & (sub < p.parenchyma_max_hu)
    values = level_f[eligible]
    k = int(round(p.severity * n_lung))
    k = min(max(k, 1), values.size)
    kth = float(np.partition(values, values.size - k)[values.size - k])
    t = kth - p.truth_f * p.edge_mm
    depth = level_f - t
    cand = eligible & (depth >= p.truth_f * p.edge_mm)

    # --- per-focus properties ----------------------------------------------------------
    p_cons = float(np.interp(p.severity, [0.0, 0.3], p.consolidation_probability))
    kinds, ggo_t, cons_hu, cons_frac, septa_hu, peak_f = [], [], [], [], [], []
    for _ in range(n):
        u = rng.random()
        kinds.append("consolidation" if u < p_cons else
                     "crazy_paving" if rng.random() < p.crazy_paving_probability else "ggo")
        ggo_t.append(rng.uniform(*p.ggo_target_hu))
        cons_hu.append(rng.uniform(*p.consolidation_hu))
        cons_frac.append(rng.uniform(0.3, 0.65))
        septa_hu.append(rng.uniform(*p.septa_hu))
        peak_f.append(rng.uniform(*p.ggo_peak_f))
    lab = owner_f.astype(np.int64)
    owners = np.arange(1, n + 1)
    max_depth = np.atleast_1d(ndimage.maximum(depth, lab * cand, owners)).astype(np.float64)
    max_depth = np.nan_to_num(max_depth, nan=0.0)

    idx = np.nonzero(cand)
    old = sub[idx]
    own = lab[idx] - 1
    own = np.clip(own, 0, n - 1)
    ramp = np.clip(depth[idx] / p.edge_mm, 0.0, 1.0)
    # below the peak the ramp is untouched, so f >= truth_f exactly where ramp >= truth_f
    f = np.minimum(ramp, np.maximum(np.asarray(peak_f)[own], p.truth_f))
    target = np.minimum(np.asarray(ggo_t)[own] + p.ggo_texture_hu * texture_f[idx],
                        p.parenchyma_max_hu)
    # the blend toward the target is taken from the local parenchymal background `ref`
    # for a share structure_keep, so small vessels and interstitium stay visible
    sl = bounding_box(cand)
    par = (eligible[sl] & (sub[sl] < -650.0)).astype(np.float32)  # aerated, no vessels
    sig = p.background_mm / spacing
    ref_box = (ndimage.gaussian_filter(sub[sl] * par, sig)
               / np.maximum(ndimage.gaussian_filter(par, sig), 1e-3))
    ci_all = tuple(idx[a] - sl[a].start for a in range(3))
    ref = np.minimum(ref_box[ci_all], old)
    base = p.structure_keep * ref + (1.0 - p.structure_keep) * old
    new = old + f * np.maximum(target - base, 0.0)
    new = np.minimum(new, np.maximum(old, p.parenchyma_max_hu + 100.0))
    # crazy paving: septal lines from the zero crossings of band-pass noise
    is_crazy = np.array([kd == "crazy_paving" for kd in kinds])[own]
    if is_crazy.any():
        white = rng.standard_normal(tuple(s.stop - s.start for s in sl)).astype(np.float32)
        s1 = p.septa_cell_mm / spacing
        band = ndimage.gaussian_filter(white, s1 * 0.5) - ndimage.gaussian_filter(white, s1)
        band /= max(float(band.std()), 1e-6)
        lines = np.exp(-(band / p.septa_width) ** 2)
        ci = tuple(c[is_crazy] for c in ci_all)
        new[is_crazy] += np.asarray(septa_hu)[own[is_crazy]] * f[is_crazy] * lines[ci]
    # consolidation cores, native airways kept, synthetic air bronchograms
    is_cons_focus = np.array([kd == "consolidation" for kd in kinds])
    g = np.zeros_like(f)
    keep = np.zeros(f.shape, dtype=bool)
    bronchus = np.zeros(f.shape, dtype=bool)
    if is_cons_focus.any():
        # an irregular core: the depth where consolidation starts varies with a smooth field
        core_at = (np.asarray(cons_frac) * max_depth)[own] * (1.0 + 0.35 * core_f[idx])
        g = np.clip((depth[idx] - core_at) / p.consolidation_edge_mm, 0.0, 1.0)
        g[~is_cons_focus[own]] = 0.0
        if (g > 0).any():
            in_core = g > 0
            smooth = ndimage.gaussian_filter(sub, 1.0 / spacing)
            keep = in_core & (smooth[idx] < p.airway_max_hu)
            tube = np.zeros(sub.shape, dtype=bool)
            for i in np.nonzero(is_cons_focus)[0]:
                deep = (own == i) & (g >= 1.0)
                if deep.sum() < 20:
                    continue
                j = np.argmax(np.where(deep, depth[idx], -np.inf))
                start = np.array([idx[a][j] for a in range(3)], dtype=np.float64) * spacing
                for path in _bronchogram_paths(rng, start, float(max_depth[i])):
                    tube |= _tube(sub.shape, spacing, path, float(rng.uniform(0.7, 1.1)))
            bronchus = tube[idx] & in_core & ~keep
            g[keep | bronchus] = 0.0
        cons_target = np.asarray(cons_hu)[own] + 0.5 * p.ggo_texture_hu * texture_f[idx]
        new = new * (1.0 - g) + cons_target * g
    new[bronchus] = np.minimum(old[bronchus], p.bronchogram_hu)
    if p.add_noise:
        # the blend removes (1 - keep) f of the image noise; add it back
        a = np.maximum(f * (1.0 - p.structure_keep), g)
        a[bronchus] = 1.0
        new += noise_hu * np.sqrt(1.0 - (1.0 - a) ** 2) * rng.standard_normal(new.size)
    new = np.rint(new)
    new[keep] = old[keep]
    changed = new != np.rint(old)

    # --- assemble outputs --------------------------------------------------------------
    out = hu_in.copy()
    out_sub = out[box]  # a view into out
    sel = tuple(ix[changed] for ix in idx)
    if np.issubdtype(out.dtype, np.integer):
        info = np.iinfo(out.dtype)
        out_sub[sel] = np.clip(new[changed], info.min, info.max).astype(out.dtype)
    else:
        out_sub[sel] = new[changed].astype(out.dtype)
    mask = np.zeros(hu_in.shape, dtype=np.uint8)
    mask_sub = mask[box]
    label = np.where((g >= 0.5) | bronchus, CONSOLIDATION, GGO).astype(np.uint8)
    mask_sub[sel] = label[changed]
    voxel_cm3 = volume.voxel_volume_mm3 / 1000.0
    counts = np.bincount(own[changed], minlength=n)
    lesions = []
    for i in range(n):
        if counts[i] == 0:
            continue
        c = centres[i]
        kji = np.array([cidx[a][c] for a in range(3)]) * np.array(factors) + offset
        centre_lps = volume.affine[:3, :3] @ kji + volume.affine[:3, 3]
        side = "right" if sides_c[cidx][c] == 1 else "left"
        lesions.append(InsertedLesion(kind=kinds[i],
                                      centre_lps_mm=tuple(round(float(v), 2) for v in centre_lps),
                                      volume_cm3=round(float(counts[i] * voxel_cm3), 3),
                                      side=side, radius_mm=round(float(radii[i]), 2)))
    fraction = float(changed.sum()) / n_lung
    logger.debug("inserted %d foci, %.2f%% of the lung (target %.2f%%), noise %.1f HU",
                 len(lesions), 100 * fraction, 100 * p.severity, noise_hu)
    metadata = dict(volume.metadata)
    metadata["lesions_inserted"] = len(lesions)
    new_volume = Volume(hu=out, affine=volume.affine.copy(), metadata=metadata,
                        warnings=volume.warnings)
    return InsertedCase(volume=new_volume, mask=mask, lesions=tuple(lesions),
                        severity_target=p.severity, involved_fraction=fraction,
                        noise_hu=noise_hu)


def inserted_truth(volume: Volume, lung: np.ndarray, case: InsertedCase | None,
                   source: str, seed: int | None) -> dict[str, Any]:
    """truth.json content (the keys `covidct synth` writes) for an inserted or negative case.

    lung: uint8 1 right / 2 left; case None means the untouched volume (a negative).
    """
    from covidct.synth.case import volume_truth

    cm3 = volume.voxel_volume_mm3 / 1000.0
    infection = case.mask if case is not None else np.zeros(lung.shape, dtype=np.uint8)
    truth: dict[str, Any] = {
        **volume_truth(volume, lung, infection),
        "ggo_volume_cm3": int((infection == GGO).sum()) * cm3,
        "consolidation_volume_cm3": int((infection == CONSOLIDATION).sum()) * cm3,
        "source": source,
        "seed": seed,
        "generator": "covidct.synth.insert v1",
        "infection_labels": {"1": "ground glass (incl. crazy paving)", "2": "consolidation"},
    }
    if case is not None:
        truth["severity_target"] = case.severity_target
        truth["noise_hu"] = round(case.noise_hu, 2)
        truth["lesions"] = [lesion.as_dict() for lesion in case.lesions]
    return truth
