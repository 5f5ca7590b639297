"""Non-COVID findings of the held-out family (the negatives' confounders).

Each function changes the parenchyma HU in place and returns a float32 map (0..1) of
where the vessels must not show (air spaces, fluid), or None; none of them marks infection.

- dependent: gravity-dependent density, a dorsal subpleural band (+120..260 HU, e-folding
  6-14 mm) as in a supine patient;
- atelectasis: plate-like (discoid) bands in the lower zones and a dense dorsal basal
  rim of compressed lung (-20..+40 HU);
- effusion: pleural fluid layering dorsally, thickest at the base (0..20 HU); the fluid
  leaves the lung mask, with a rim of compressed lung beside it;
- nodules: 1-5 lobulated solid nodules (3-10 mm radius), some calcified;
- emphysema: centrilobular lucencies in the upper zones and paraseptal bullae;
- fibrosis: basal, subpleural reticulation (Voronoi walls of 3-7 mm cells) with a
  honeycomb layer of air cysts at the pleura.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from covidct.heldout.fields import Grid, cell_walls, harmonic_radius, radius_factor, smooth_field


def dorsal_depth(lung: np.ndarray, grid: Grid) -> np.ndarray:
    """mm from each voxel forward of its column's most dorsal lung voxel (float32, per
    (z, x) column and side; large outside the lung)."""
    inside = lung > 0
    ny = lung.shape[1]
    has = inside.any(axis=1)
    last = ny - 1 - np.argmax(inside[:, ::-1, :], axis=1)  # (z, x)
    depth = (last[:, None, :] - np.arange(ny)[None, :, None]).astype(np.float32) * grid.spacing[1]
    depth[~np.broadcast_to(has[:, None, :], depth.shape)] = 1e4
    depth[~inside] = 1e4
    return depth


def _low(grid: Grid, lung: np.ndarray) -> np.ndarray:
    """0 at the lung's top .. 1 at its bottom, per slice (z, 1, 1)."""
    rows = np.nonzero((lung > 0).any(axis=(1, 2)))[0]
    z = np.arange(lung.shape[0], dtype=np.float32)
    top, bottom = (rows.max(), rows.min()) if rows.size else (lung.shape[0], 0)
    return np.clip((top - z) / max(top - bottom, 1), 0, 1)[:, None, None]


def dependent(hu: np.ndarray, lung: np.ndarray, d_pleura: np.ndarray, grid: Grid,
              rng: np.random.Generator) -> np.ndarray | None:
    depth = dorsal_depth(lung, grid)
    band = np.exp(-depth / rng.uniform(6.0, 14.0))
    patchy = 0.65 + 0.35 * smooth_field(rng, grid, 25.0)
    rise = rng.uniform(120.0, 260.0) * band * np.clip(patchy, 0.2, 1.3) * (0.5 + 0.5 * _low(grid,
                                                                                        lung))
    hu += np.where(lung > 0, rise, 0.0).astype(np.float32)
    return None


def atelectasis(hu: np.ndarray, lung: np.ndarray, d_pleura: np.ndarray, grid: Grid,
                rng: np.random.Generator) -> np.ndarray | None:
    z, y, x = grid.mesh()
    inside = lung > 0
    low = _low(grid, lung)
    dense = rng.uniform(-20.0, 40.0)
    for _ in range(int(rng.integers(1, 4))):  # plate-like bands
        cand = np.argwhere(inside & (low > 0.55) & (d_pleura > 8))
        if len(cand) == 0:
            break
        c = cand[rng.integers(len(cand))]
        cz, cy, cx = (o + i * s for o, i, s in zip(grid.origin, c, grid.spacing, strict=True))
        tilt = rng.normal(0.0, 0.25, 2)
        normal = np.array([1.0, tilt[0], tilt[1]]) / np.sqrt(1 + (tilt**2).sum())
        across = (z - cz) * normal[0] + (y - cy) * normal[1] + (x - cx) * normal[2]
        along = np.sqrt(np.maximum((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 - across**2, 0))
        half = rng.uniform(1.5, 3.0)
        plate = np.clip(half - np.abs(across) + 0.5, 0, 1) * np.clip(
            (rng.uniform(20.0, 45.0) - along) / 5.0, 0, 1)
        hu[...] = np.where(inside, hu * (1 - plate) + plate * dense, hu)
    rim = np.clip((rng.uniform(5.0, 20.0) * low**1.5 - dorsal_depth(lung, grid)) / 3.0 + 0.5,
                  0, 1)
    hu[...] = np.where(inside, hu * (1 - rim) + rim * (dense + 10.0), hu)
    return None


def effusion(hu: np.ndarray, lung: np.ndarray, d_pleura: np.ndarray, grid: Grid,
             rng: np.random.Generator) -> np.ndarray | None:
    """Also removes the fluid from `lung` (in place)."""
    low = _low(grid, lung)
    depth = dorsal_depth(lung, grid)
    sides = [1, 2] if rng.random() < 0.5 else [int(rng.integers(1, 3))]
    fluid = np.zeros(lung.shape, bool)
    thick = rng.uniform(15.0, 45.0) * np.clip((low - 0.35) / 0.65, 0, 1) ** 0.7
    for side in sides:
        fluid |= (lung == side) & (depth < thick)
    rim = (lung > 0) & ~fluid & (depth < thick + rng.uniform(3.0, 7.0)) & (thick > 0)
    hu[rim] = hu[rim] * 0.4 + 0.6 * rng.uniform(-100.0, 20.0)
    hu[fluid] = rng.uniform(0.0, 20.0)
    lung[fluid] = 0
    return fluid.astype(np.float32)


def nodules(hu: np.ndarray, lung: np.ndarray, d_pleura: np.ndarray, grid: Grid,
            rng: np.random.Generator) -> np.ndarray | None:
    z, y, x = grid.mesh()
    for _ in range(int(rng.integers(1, 6))):
        r0 = rng.uniform(3.0, 10.0)
        cand = np.argwhere((lung > 0) & (d_pleura > r0 * 0.6))
        if len(cand) == 0:
            break
        c = cand[rng.integers(len(cand))]
        cz, cy, cx = (o + i * s for o, i, s in zip(grid.origin, c, grid.spacing, strict=True))
        box = tuple(slice(max(i - int(2.5 * r0 / s) - 2, 0), i + int(2.5 * r0 / s) + 3)
                    for i, s in zip(c, grid.spacing, strict=True))
        dz, dy, dx = (z[box[0]] - cz), (y[:, box[1]] - cy), (x[:, :, box[2]] - cx)
        r = np.sqrt(dz * dz + dy * dy + dx * dx)
        radius = r0 * radius_factor(harmonic_radius(rng, 0.2, 3), dz, dy, dx)
        occ = np.clip(radius - r + 0.5, 0, 1) * (lung[box] > 0)
        value = rng.uniform(250.0, 600.0) if (r0 < 6 and rng.random() < 0.3) else rng.uniform(
            25.0, 70.0)
        hu[box] = hu[box] * (1 - occ) + occ * value
    return None


def emphysema(hu: np.ndarray, lung: np.ndarray, d_pleura: np.ndarray, grid: Grid,
              rng: np.random.Generator) -> np.ndarray | None:
    inside = lung > 0
    upper = 1.0 - _low(grid, lung)
    holes = np.zeros(lung.shape, np.float32)
    # centrilobular: where a fine field peaks, weighted to the upper zones
    f = smooth_field(rng, grid, rng.uniform(4.0, 7.0))
    level = rng.uniform(1.3, 2.0)
    holes = np.clip((f + 1.2 * upper - 0.6 - level) / 0.3, 0, 1).astype(np.float32)
    z, y, x = grid.mesh()
    for _ in range(int(rng.integers(2, 7))):  # paraseptal bullae
        cand = np.argwhere(inside & (d_pleura < 6) & (upper > 0.4))
        if len(cand) == 0:
            break
        c = cand[rng.integers(len(cand))]
        cz, cy, cx = (o + i * s for o, i, s in zip(grid.origin, c, grid.spacing, strict=True))
        rb = rng.uniform(8.0, 22.0)
        r = np.sqrt((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2)
        holes = np.maximum(holes, np.clip(rb - r + 0.5, 0, 1))
        wall = np.clip(1.0 - np.abs(r - rb) / 0.8, 0, 1) * inside
        hu += (wall * 70.0).astype(np.float32)
    holes *= inside
    hu[...] = hu * (1 - holes) + holes * rng.uniform(-995.0, -970.0)
    return holes


def fibrosis(hu: np.ndarray, lung: np.ndarray, d_pleura: np.ndarray, grid: Grid,
             rng: np.random.Generator) -> np.ndarray | None:
    inside = lung > 0
    low = _low(grid, lung)
    depth = rng.uniform(12.0, 25.0)
    zone = inside & (d_pleura < depth * np.clip(low * 1.4 - 0.3, 0, 1))
    idx = np.nonzero(zone)
    if idx[0].size == 0:
        return None
    pts = np.stack([o + i * s for o, i, s in zip(grid.origin, idx, grid.spacing, strict=True)],
                   -1).astype(np.float32)
    walls = cell_walls(rng, pts, rng.uniform(3.5, 6.5), pts.min(0), pts.max(0))
    lines = np.exp(-((walls / 0.7) ** 2))
    strength = np.clip(1.0 - d_pleura[idx] / depth, 0, 1) ** 0.5
    values = hu[idx] + 60.0 * strength + lines * strength * rng.uniform(250.0, 450.0)
    honey = (d_pleura[idx] < rng.uniform(4.0, 8.0)) & (walls > 1.0) & (strength > 0.5)
    values = np.where(honey, rng.uniform(-990.0, -950.0), values)
    hu[idx] = values
    air = np.zeros(lung.shape, np.float32)
    air[tuple(i[honey] for i in idx)] = 1.0
    return air


FINDINGS: dict[str, Callable[..., np.ndarray | None]] = {
    "dependent": dependent, "atelectasis": atelectasis, "effusion": effusion,
    "nodules": nodules, "emphysema": emphysema, "fibrosis": fibrosis,
}
