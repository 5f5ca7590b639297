"""The lung stage: a 2D U-Net per slice -> a 3D lung mask (1 right, 2 left) on the input grid.

Slices go through `preprocess.lung_model_input` (Gozes et al.'s [-1000, 0] HU window,
224x224), the lung and side scores are resized back to the slice grid (bilinear) and
thresholded.

The network learned synthetic anatomy; on real scans it paints bowel gas, the axilla and
the chest wall as lung. So the mask is built from HU evidence first (covidct.anatomy: air
inside the body in lung-like components, minus the central airway) and the network adds
only what HU cannot see, dense (consolidated) lung: its lung beyond the aerated lung is
kept where it is thicker than a rim (an opening of RIM_MM), within NETWORK_REACH_MM of
aerated lung, and inside the 3D convex hull of that side's aerated lung. Measured on the
real reference masks and the synthetic test corpus: benchmarks/lung_anatomy.py.

3D post-processing: small spurious components are dropped, each side keeps its largest 3D
component, other islands go to the side whose lung lies nearer (left/right consistency),
and holes are filled slice by slice (consolidation inside the lung is lung), except the
islands of a diaphragm dome (covidct.diaphragm).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import cc3d
import fill_voids
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from covidct.anatomy import AIR_HU, ChestAnatomy, PooledGrid, chest_anatomy, open_in_plane
from covidct.blocks import block_upsample, bounding_box
from covidct.diaphragm import CAP_MIN_HU, dome_components, dome_holes
from covidct.models.runtime import autocast, input_antialias, use_bf16
from covidct.preprocess import lung_model_input
from covidct.volume import Volume

logger = logging.getLogger(__name__)

RIGHT, LEFT = 1, 2
MIN_COMPONENT_SHARE = 0.02  # islands smaller than this share of the largest are dropped
NETWORK_REACH_MM = 30.0  # how far (in-plane) from aerated lung the network's lung is kept
HULL_POINTS = 4000
RIM_MM = 2.0  # network lung beyond the aerated lung thinner than ~2x this is dropped
# How far outside that side's aerated-lung hull dense lung is kept. Growing it recovers
# dense posterior lung on the synthetic corpus but lets the network's chest-wall rim back in
# on real scans (benchmarks/results/lung_hull_margin.txt): 0.
HULL_MARGIN_MM = 0.0
DOME_PASSES = 3  # covidct.diaphragm.dome_components, repeated on what is left


def predict_lung_labels(hu: np.ndarray, module: torch.nn.Module, *, batch_size: int = 16,
                        bf16: bool = False, antialias: bool = False) -> np.ndarray:
    """Per-slice arg-max labels (z, y, x) uint8, before 3D post-processing.

    `antialias`: how the input is shrunk (the model card's `input_antialias`).
    """
    module.eval()
    device = next(module.parameters()).device
    out = np.zeros(hu.shape, dtype=np.uint8)
    shape_yx = hu.shape[1:]
    with torch.no_grad():
        for start in range(0, hu.shape[0], batch_size):
            x = lung_model_input(hu[start:start + batch_size], antialias=antialias).to(device)
            with autocast(bf16, device):
                logits = module(x)
            out[start:start + x.shape[0]] = logits_to_labels(logits.float(), shape_yx)
    return out


def logits_to_labels(logits: torch.Tensor, shape_yx: tuple[int, int]) -> np.ndarray:
    """(n, 3, 224, 224) logits -> (n, y, x) uint8 labels on the slice grid.

    Two scores are resized (bilinear) instead of three logits + an arg-max over channels
    (15x faster at 512x512): lung-vs-background max(right, left) - background, and
    right - left. Where the first is > 0 the pixel is lung, the second picks the side.
    """
    lung_score = logits[:, 1:].amax(dim=1) - logits[:, 0]
    side_score = logits[:, 1] - logits[:, 2]
    scores = F.interpolate(torch.stack([lung_score, side_score], dim=1), size=shape_yx,
                           mode="bilinear", align_corners=False).cpu().numpy()
    # bool -> uint8 views, no copies: 1 where lung, +1 where lung and the left side wins
    # (torch.where with Python ints made int64 tensors and took 10x longer)
    is_lung = (scores[:, 0] > 0).view(np.uint8)
    return is_lung + (is_lung & (scores[:, 1] <= 0).view(np.uint8))


def _mean_x(mask: np.ndarray) -> float:
    """Mean x index of a (z, y, x) mask's voxels (without materialising their indices)."""
    counts = mask.sum(axis=(0, 1), dtype=np.int64)
    return float(np.dot(counts, np.arange(counts.size)) / max(int(counts.sum()), 1))


def fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    """Holes filled on every (y, x) slice of a (z, y, x) mask (2D, as binary_fill_holes).

    fill_voids per slice: about 10x faster than scipy's binary_fill_holes per slice, same
    masks (benchmarks/results/lung_stage_checks.txt).
    """
    out = mask.copy()
    for z in np.flatnonzero(mask.any(axis=(1, 2))):
        out[z] = fill_voids.fill(mask[z], in_place=False)
    return out


def _components_at_least(mask: np.ndarray, share: float) -> np.ndarray:
    """The 6-connected components of `mask` with at least `share` of the largest's voxels."""
    components, count = cc3d.connected_components(mask, connectivity=6, return_N=True)
    # cc3d counts without np.bincount's cast of every label to int64
    if count == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = cc3d.statistics(components)["voxel_counts"]
    keep = np.zeros(count + 1, dtype=bool)
    keep[1:] = sizes[1:] >= share * sizes[1:].max()
    return keep[components]


def postprocess_lung_mask(labels: np.ndarray, hu: np.ndarray | None = None,
                          spacing_mm: tuple[float, float, float] | None = None) -> np.ndarray:
    """3D clean-up of a (z, y, x) right/left label map (see module docstring).

    With `hu` (same grid, canonical order) and `spacing_mm`, holes that are diaphragm
    domes (covidct.diaphragm) stay outside the lung.

    Connected components come from cc3d (6-connectivity, as scipy's default): with
    fill_voids, 4.6-6.6x faster than the scipy.ndimage version, same masks
    (benchmarks/results/lung_stage_checks.txt).
    """
    out = np.zeros(labels.shape, dtype=np.uint8)
    if not labels.any():
        return out
    region = bounding_box(labels > 0, margin=(1, 0, 0))  # a slice below: what a dome rests on
    sub = labels[region]
    hu_sub = None if hu is None else hu[region]
    lung = _components_at_least(sub > 0, MIN_COMPONENT_SHARE)
    result = np.zeros(sub.shape, dtype=np.uint8)
    main = {}
    for side in (RIGHT, LEFT):
        side_mask = (sub == side) & lung
        if side_mask.any():
            main[side] = cc3d.largest_k(side_mask, k=1, connectivity=6) > 0
            result[main[side]] = side
    # Islands of either label outside the main components: give each to the nearer side.
    leftover = lung & (result == 0)
    if leftover.any() and main:
        islands = cc3d.connected_components(leftover, connectivity=6)
        centres = {s: _mean_x(m) for s, m in main.items()}
        for index, obj in enumerate(ndimage.find_objects(islands), start=1):
            if obj is None:
                continue
            piece = islands[obj] == index
            x = obj[2].start + np.mean(np.nonzero(piece)[2])
            side = min(centres, key=lambda s: abs(centres[s] - x))
            result[obj][piece] = side
    holes = {side: fill_holes_per_slice(result == side) & (result == 0) for side in (RIGHT, LEFT)}
    if hu_sub is not None and spacing_mm is not None:
        domes = dome_holes(holes[RIGHT] | holes[LEFT], result > 0, hu_sub, spacing_mm)
        holes = {side: h & ~domes for side, h in holes.items()}
    for side in (RIGHT, LEFT):
        result[holes[side]] = side
    out[region] = result
    return out


@dataclass(frozen=True)
class ChestMasks:
    """The lung stage's output on the input's (z, y, x) grid."""

    lung: np.ndarray     # uint8: 1 right lung, 2 left lung (airway excluded)
    airway: np.ndarray   # bool: trachea and central bronchi outside the lung mask
    anatomy: ChestAnatomy


def _dilate_in_plane(mask: np.ndarray, reach_mm: float, spacing_yx_mm: tuple[float, float]
                     ) -> np.ndarray:
    """Grow a (z, y, x) mask by `reach_mm` in each slice (a square: a separable max filter)."""
    size = (1, 2 * int(round(reach_mm / spacing_yx_mm[0])) + 1,
            2 * int(round(reach_mm / spacing_yx_mm[1])) + 1)
    return ndimage.maximum_filter(mask.view(np.uint8), size=size) > 0


def _row_ends(mask: np.ndarray) -> np.ndarray:
    """(n, 3) indices of the first and last voxel of `mask` on every (z, y) row: the points
    a convex hull needs (the others lie between them)."""
    rows = mask.any(axis=2)
    zs, ys = np.nonzero(rows)
    first = mask.argmax(axis=2)[zs, ys]
    last = mask.shape[2] - 1 - mask[:, :, ::-1].argmax(axis=2)[zs, ys]
    return np.concatenate([np.stack([zs, ys, first], axis=1), np.stack([zs, ys, last], axis=1)])


def _hull_row_spans(equations: np.ndarray, rows_mm: np.ndarray, margin_mm: float,
                    chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Where each (z, y) row (mm, (n, 2)) crosses a convex hull grown by `margin_mm`: the
    x interval [lo, hi] in mm (lo > hi: the row misses it).

    A hull is the intersection of its facets' half-spaces n.p + d <= 0 (Qhull's unit
    normals), so on one row each facet bounds x from one side: a few vector operations
    per row instead of one point-location per voxel.
    """
    n_zy, n_x, d = equations[:, :2], equations[:, 2], equations[:, 3]
    lo = np.full(rows_mm.shape[0], -np.inf)
    hi = np.full(rows_mm.shape[0], np.inf)
    upper, lower, flat = n_x > 1e-9, n_x < -1e-9, np.abs(n_x) <= 1e-9
    for start in range(0, rows_mm.shape[0], chunk):
        part = slice(start, start + chunk)
        rhs = margin_mm - d[None, :] - rows_mm[part] @ n_zy.T  # (rows, facets): n_x x <= rhs
        if upper.any():
            hi[part] = (rhs[:, upper] / n_x[upper]).min(axis=1)
        if lower.any():
            lo[part] = (rhs[:, lower] / n_x[lower]).max(axis=1)
        if flat.any():  # a facet parallel to x: the whole row is in or out of its half-space
            outside = (rhs[:, flat] < 0).any(axis=1)
            lo[part][outside], hi[part][outside] = np.inf, -np.inf
    return lo, hi


def _lung_hulls(parenchyma: np.ndarray, sides: np.ndarray, where: np.ndarray,
                spacing_mm: tuple[float, float, float], margin_mm: float = 0.0) -> np.ndarray:
    """(z, y, x) bool: the voxels of `where` inside the 3D convex hull of either side's
    aerated lung, grown by `margin_mm` (a lung's shape holds its consolidated parts,
    whatever slice they are on)."""
    out = np.zeros(parenchyma.shape, dtype=bool)
    zs, ys, xs = np.nonzero(where)
    if zs.size == 0:
        return out
    scale = np.asarray(spacing_mm, dtype=np.float64)
    rows, row_of = np.unique(np.stack([zs, ys], axis=1), axis=0, return_inverse=True)
    rows_mm = rows * scale[:2]
    x_mm = xs * scale[2]
    for side in (RIGHT, LEFT):
        part = parenchyma & (sides == side)
        hull_points = _row_ends(part)
        if hull_points.shape[0] < 10:
            continue
        if hull_points.shape[0] > HULL_POINTS:  # the hull of a sample: a few 1000 points do
            step = hull_points.shape[0] // HULL_POINTS + 1
            hull_points = hull_points[::step]
        try:
            hull = ConvexHull(hull_points * scale)
        except QhullError:  # flat (one slice) or degenerate: no 3D shape to hold anything
            continue
        lo, hi = _hull_row_spans(hull.equations, rows_mm, margin_mm)
        inside = (x_mm >= lo[row_of.ravel()] - 1e-6) & (x_mm <= hi[row_of.ravel()] + 1e-6)
        out[zs[inside], ys[inside], xs[inside]] = True
    return out


def _side_map(net: np.ndarray, body_cols: np.ndarray, x0: int = 0) -> np.ndarray:
    """(z, 1, x) uint8: RIGHT left of each slice's midline (patient right: low x), else LEFT.

    The midline is halfway between the network's right- and left-lung centres on that slice
    (`net`: a crop of the label map starting at column x0), else the centre of the body's x
    extent (body_cols: (z, X) bool over the full width, columns holding body).
    """
    width, full = net.shape[2], body_cols.shape[1]
    xs = np.arange(x0, x0 + width, dtype=np.float64)

    def centre(mask: np.ndarray) -> np.ndarray:
        counts = mask.sum(axis=1, dtype=np.float64)  # (z, x)
        total = counts.sum(axis=1)
        return np.where(total > 0, counts @ xs / np.maximum(total, 1), np.nan)

    first = np.where(body_cols.any(axis=1), body_cols.argmax(axis=1), 0)
    last = np.where(body_cols.any(axis=1), full - 1 - body_cols[:, ::-1].argmax(axis=1),
                    full - 1)
    midline = (first + last) / 2.0
    both = centre(net == RIGHT), centre(net == LEFT)
    have = np.isfinite(both[0]) & np.isfinite(both[1])
    midline[have] = (both[0][have] + both[1][have]) / 2.0
    return np.where(xs[None, None, :] < midline[:, None, None], RIGHT, LEFT).astype(np.uint8)


def _dilate_cross(mask: np.ndarray) -> np.ndarray:
    """A (z, y, x) bool mask grown by one pixel in-plane (4-neighbours): binary_dilation with
    the 2D cross, as four shifted ORs."""
    out = mask.copy()
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    out[:, :, 1:] |= mask[:, :, :-1]
    out[:, :, :-1] |= mask[:, :, 1:]
    return out


def _lung_box(air: np.ndarray, margin: int, factor: int, shape: tuple[int, int, int]
              ) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """The box (pooled grid, full grid) that holds every voxel the lung stage can call lung
    or airway: the box of the lung air and airway, grown in-plane by `margin` pooled pixels
    and by a slice along z (what a diaphragm dome's island rests on, covidct.diaphragm)."""
    pooled = bounding_box(air, (1, margin, margin))
    full = (pooled[0],) + tuple(slice(p.start * factor, min(p.stop * factor, shape[axis]))
                                for axis, p in ((1, pooled[1]), (2, pooled[2])))
    return pooled, full


def combine_with_anatomy(hu: np.ndarray, net_labels: np.ndarray, anatomy: ChestAnatomy,
                         spacing_mm: tuple[float, float, float],
                         reach_mm: float = NETWORK_REACH_MM,
                         hull_margin_mm: float = HULL_MARGIN_MM,
                         exclude_domes: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The lung mask from HU evidence and the network, and the airway outside it.

    Lung = air (< AIR_HU) in lung-like components (covidct.anatomy), plus the network's
    lung where it lies inside the body within `reach_mm` (in-plane) of that air, thicker
    than a rim and within `hull_margin_mm` of the convex hull of that side's aerated lung
    (dense, consolidated lung next to aerated lung), minus the central airway; then the 3D
    clean-up and per-slice hole filling of `postprocess_lung_mask` (consolidation inside
    the lung is lung) except diaphragm domes (covidct.diaphragm; exclude_domes=False
    fills them as before). Returns (lung uint8 1 right / 2 left, airway bool), both (z, y, x).

    Everything runs inside the box of the lung air grown by `reach_mm`: nothing outside it
    can become lung, and the full-grid steps cost a third of the whole grid's.
    """
    grid = anatomy.grid
    f = grid.factor
    mask = np.zeros(hu.shape, dtype=np.uint8)
    airway_out = np.zeros(hu.shape, dtype=bool)
    if not anatomy.lung_air.any():
        return mask, airway_out
    reach_px = int(round(reach_mm / min(grid.spacing_mm[1:]))) + 2
    pbox, box = _lung_box(anatomy.lung_air | anatomy.airway, reach_px, f, hu.shape)
    hu, net_labels = hu[box], net_labels[box]
    crop = PooledGrid(f, hu.shape, grid.spacing_mm)  # the box on the pooled grid
    lung_air, airway_p, body = anatomy.lung_air[pbox], anatomy.airway[pbox], anatomy.body[pbox]
    gut = anatomy.gut[pbox]

    air = hu < AIR_HU
    airway = crop.upsample(_dilate_cross(airway_p))
    parenchyma = lung_air & ~airway_p
    near = crop.upsample(_dilate_in_plane(parenchyma, reach_mm, grid.spacing_mm[1:]) & body)
    aerated = crop.upsample(_dilate_cross(parenchyma)) & air & ~airway
    net = net_labels > 0
    extra = net & near & ~airway & ~aerated
    if gut.any():  # the network paints a gas-filled stomach as lung too
        extra &= ~crop.upsample(_dilate_cross(gut))
    body_cols = anatomy.body[pbox[0]].any(axis=1)  # (z, x') over the full pooled width
    if extra.any():
        # On real scans the network's outline runs a few mm past the lung into the chest
        # wall, diaphragm and mediastinum; consolidated lung is thicker than that rim. An
        # opening of the network's extra region (pooled grid) keeps the thick parts only.
        thick = open_in_plane(crop.pool(extra) > 0.5, RIM_MM, grid.spacing_mm[1:])
        # ...and only inside (or just beyond) each lung's convex 3D outline: consolidation
        # fills the lung's shape, while the axilla, the shoulder girdle and the chest wall
        # the network also paints lie outside it.
        sides_pooled = _side_map(net_labels[:, ::f, ::f], body_cols,
                                 pbox[2].start)[..., :parenchyma.shape[2]]
        thick = _lung_hulls(parenchyma, sides_pooled, thick, grid.spacing_mm, hull_margin_mm)
        extra &= crop.upsample(thick)
    lung = aerated | extra
    full_cols = np.repeat(body_cols, f, axis=1)[:, : mask.shape[2]]
    sides = np.where(net, net_labels, _side_map(net_labels, full_cols, box[2].start))
    labels = np.where(lung, sides, 0).astype(np.uint8)
    if exclude_domes:
        lung_box = postprocess_lung_mask(labels, hu, spacing_mm)
        # Domes the network painted as dense lung, on every f-th pixel (the pooled grid's
        # shape; the rule looks at regions of >= 3 cm2), repeated: a dome's upper part
        # rests on its lower part until that is taken out.
        sampled = (slice(None), slice(None, None, f), slice(None, None, f))
        for _ in range(DOME_PASSES):
            domes = dome_components(lung_box[sampled] > 0, hu[sampled], body,
                                    grid.spacing_mm)
            if not domes.any():
                break
            region = bounding_box(domes)
            full = (region[0], *(slice(r.start * f, r.stop * f) for r in region[1:]))
            drop = (block_upsample(domes[region], (1, f, f), lung_box[full].shape)
                    & (hu[full] >= CAP_MIN_HU) & (lung_box[full] > 0))
            lung_box[full][drop] = 0
        mask[box] = lung_box
    else:
        mask[box] = postprocess_lung_mask(labels)
    airway_out[box] = crop.upsample(airway_p) & air & (mask[box] == 0)
    return mask, airway_out


def segment_chest(volume: Volume, model: Any, *, batch_size: int = 16,
                  dtype: str | None = None, reach_mm: float = NETWORK_REACH_MM) -> ChestMasks:
    """Lung (1 right, 2 left), airway and body masks of a volume, on its grid.

    `model`: a LoadedModel or a lung nn.Module; dtype 'auto' (None) | 'fp32' | 'bf16'.
    """
    module = getattr(model, "module", model)
    device = next(module.parameters()).device
    net_labels = predict_lung_labels(volume.hu, module, batch_size=batch_size,
                                     bf16=use_bf16(dtype, device),
                                     antialias=input_antialias(model))
    anatomy = chest_anatomy(volume.hu, volume.spacing_mm)
    lung, airway = combine_with_anatomy(volume.hu, net_labels, anatomy, volume.spacing_mm,
                                        reach_mm)
    if not lung.any():
        logger.warning("No lung found in the volume (%s).", volume.metadata.get("source_path"))
    return ChestMasks(lung=lung, airway=airway, anatomy=anatomy)


def segment_lungs(volume: Volume, model: Any, *, batch_size: int = 16, dtype: str | None = None,
                  postprocess: bool = True, anatomy: bool = True) -> np.ndarray:
    """Lung mask (z, y, x) uint8 on the volume's grid: 1 right lung, 2 left lung.

    `model`: a LoadedModel or a lung nn.Module; dtype 'auto' (None) | 'fp32' | 'bf16'.
    postprocess=False: the network's raw per-slice labels; anatomy=False: the network's
    labels with the 3D clean-up only (no HU evidence), as the lung stage was before.
    """
    if postprocess and anatomy:
        return segment_chest(volume, model, batch_size=batch_size, dtype=dtype).lung
    module = getattr(model, "module", model)
    device = next(module.parameters()).device
    labels = predict_lung_labels(volume.hu, module, batch_size=batch_size,
                                 bf16=use_bf16(dtype, device), antialias=input_antialias(model))
    return postprocess_lung_mask(labels) if postprocess else labels
