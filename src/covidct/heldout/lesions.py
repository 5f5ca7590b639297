"""COVID-19 pneumonia of the held-out family: lobulated blobs placed one by one.

Each lesion is a blob whose radius over directions is a random sum of spherical
harmonics (`fields.harmonic_radius`), its margin roughened by a fine random field. Blobs
are dropped at centres drawn with weights favouring the subpleural, dorsal and basal lung,
alternating sides (bilateral, multifocal), until the infected volume reaches the drawn
share of the lung. Every blob is one of three patterns:

- ground glass: a partial-volume rise of the parenchyma towards -680..-420 HU (vessels are
  composited afterwards, so they stay visible through it);
- crazy paving: ground glass plus thickened septa, the walls of a Voronoi tessellation of
  7-13 mm cells (+120..260 HU);
- consolidation: a ground-glass halo round a core of -40..+45 HU holding air bronchograms
  (tubes along the intersection curves of two random fields).

The infection mask is every lung voxel whose occupancy is >= 0.5. This differs from the
training family (`covidct.synth.lesions`: one thresholded propensity field per case,
banded septa) in shape, texture and placement.
"""

from __future__ import annotations

import numpy as np

from covidct.heldout.fields import (
    Grid,
    cell_walls,
    harmonic_radius,
    radius_factor,
    smooth_field,
    tube_profile,
)

PATTERNS = ("ggo", "crazy_paving", "consolidation")
MAX_LESIONS = 160


def placement_weights(lung: np.ndarray, d_pleura: np.ndarray, grid: Grid) -> np.ndarray:
    """Relative chance (float32, 0 outside the lung) that a lesion is centred on a voxel:
    subpleural x dorsal x basal."""
    z, y, _ = grid.mesh()
    inside = lung > 0
    zz = np.broadcast_to(z, lung.shape)[inside]
    yy = np.broadcast_to(y, lung.shape)[inside]
    low = (zz.max() - zz) / max(float(np.ptp(zz)), 1.0)
    back = (yy - yy.min()) / max(float(np.ptp(yy)), 1.0)
    w = np.zeros(lung.shape, np.float32)
    w[inside] = np.exp(-d_pleura[inside] / 18.0) * (1 + 1.2 * back) * (1 + 1.0 * low)
    return w


def add_covid(hu: np.ndarray, lung: np.ndarray, d_pleura: np.ndarray, grid: Grid,
              severity: float, rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:
    """Add lesions to the parenchyma `hu` (in place, lung voxels only).

    hu: float32 (z, y, x) HU; lung: uint8 1 right / 2 left; d_pleura: mm to the lung
    surface. Returns the infection mask (bool) and one record per lesion.
    """
    inside = lung > 0
    target = severity * int(inside.sum())
    weights = placement_weights(lung, d_pleura, grid)
    infection = np.zeros(lung.shape, bool)
    voxel_mm3 = float(np.prod(grid.spacing))
    late = severity > 0.12  # extensive disease: more consolidation
    records: list[dict] = []
    flat_lung = lung.ravel()
    cumulative = {}
    for side in (1, 2):
        index = np.flatnonzero(flat_lung == side)
        if index.size:
            cumulative[side] = (index, np.cumsum(weights.ravel()[index], dtype=np.float64))
    if not cumulative:
        return infection, []
    done = 0
    for n in range(MAX_LESIONS):
        if done >= target:
            break
        side = 1 + n % 2
        if side not in cumulative:
            side = next(iter(cumulative))
        index, cum = cumulative[side]
        pick = int(np.searchsorted(cum, rng.uniform(0.0, cum[-1]), side="right"))
        centre = np.unravel_index(int(index[min(pick, index.size - 1)]), lung.shape)
        remaining_mm3 = (target - done) * voxel_mm3
        r_fit = (3 * remaining_mm3 / (4 * np.pi)) ** (1 / 3)
        r0 = float(min(np.exp(rng.uniform(np.log(8.0), np.log(32.0))) * (1 + 1.5 * severity),
                       max(1.15 * r_fit, 5.0)))
        pattern = str(rng.choice(PATTERNS, p=(0.3, 0.3, 0.4) if late else (0.5, 0.3, 0.2)))
        added = _lesion(hu, lung, infection, grid, centre, r0, pattern, rng)
        done += added
        records.append({"centre_index": [int(c) for c in centre], "radius_mm": round(r0, 1),
                        "pattern": pattern, "side": "right" if side == 1 else "left",
                        "voxels": added})
    return infection, records


def _box(grid: Grid, centre: tuple, reach_mm: float) -> tuple[slice, slice, slice]:
    return tuple(slice(max(c - int(np.ceil(reach_mm / s)), 0), min(c + int(np.ceil(reach_mm / s))
                                                                   + 1, n))
                 for c, s, n in zip(centre, grid.spacing, grid.shape, strict=True))


def _lesion(hu: np.ndarray, lung: np.ndarray, infection: np.ndarray, grid: Grid,
            centre: tuple, r0: float, pattern: str, rng: np.random.Generator) -> int:
    """Draw one lesion in place; returns the number of newly infected voxels."""
    box = _box(grid, centre, 2.0 * r0 + 4.0)
    sub = Grid(tuple(s.stop - s.start for s in box),  # type: ignore[arg-type]
               grid.spacing, tuple(o + s.start * d for o, s, d in
                                   zip(grid.origin, box, grid.spacing, strict=True)))
    z, y, x = sub.mesh()
    cz, cy, cx = (o + c * d for o, c, d in zip(grid.origin, centre, grid.spacing, strict=True))
    dz, dy, dx = z - cz, y - cy, x - cx
    r = np.sqrt(dz * dz + dy * dy + dx * dx)
    radius = r0 * radius_factor(harmonic_radius(rng, 0.32, 4), dz, dy, dx)
    rough = smooth_field(rng, sub, 5.0)
    edge = rng.uniform(2.5, 5.0)
    occ = np.clip((radius - r + 2.5 * rough) / edge + 0.5, 0.0, 1.0)
    in_lung = lung[box] > 0
    occ = np.where(in_lung, occ, 0.0).astype(np.float32)
    if not (occ > 0).any():
        return 0
    local = hu[box]
    par = local.copy()
    mottle = smooth_field(rng, sub, 3.0)
    ggo = rng.uniform(-680.0, -420.0) + 35.0 * mottle
    new = par + occ * np.maximum(ggo - par, 0.0)
    if pattern == "crazy_paving":
        pts = np.stack(np.broadcast_arrays(z, y, x), -1).reshape(-1, 3)
        lo, hi = pts.min(0), pts.max(0)
        walls = cell_walls(rng, pts, rng.uniform(7.0, 13.0), lo, hi).reshape(occ.shape)
        lines = np.exp(-((walls / rng.uniform(0.6, 1.0)) ** 2))
        new += occ * lines * rng.uniform(120.0, 260.0)
    if pattern == "consolidation":
        core = np.clip((rng.uniform(0.45, 0.8) * radius - r + 2.0 * rough) / 3.0 + 0.5, 0, 1)
        core = np.where(in_lung, core, 0.0)
        dense = rng.uniform(-40.0, 45.0) + 12.0 * mottle
        new = new * (1 - core) + core * dense
        f1, f2 = smooth_field(rng, sub, 14.0), smooth_field(rng, sub, 14.0)
        tubes = tube_profile(f1, f2, 14.0, rng.uniform(0.9, 1.8)) * (core > 0.8)
        new = new * (1 - tubes) + tubes * rng.uniform(-930.0, -850.0)
    np.copyto(local, np.where(occ > 0, np.maximum(local, new) if pattern != "consolidation"
                              else new, local))
    mask = (occ >= 0.5) & in_lung
    before = int(infection[box].sum())
    infection[box] |= mask
    return int(infection[box].sum()) - before
