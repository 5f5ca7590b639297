"""Space-filling branching trees (pulmonary arteries with their bronchi, veins).

A tree grows from a hilar root towards random points sampled inside its lung: each
branch heads for the centroid of the points it supplies, then the points are split in
two, unevenly (20-45%), across their longest axis, so a main branch runs on and side
branches leave it. Radii follow a Murray-like law by territory, r ~ n^0.36,
so branches taper from the hilum (~7 mm) to ~0.5 mm in the periphery.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from covidct.synth.geometry import Grid, sample_tubes, stamp_spheres
from covidct.synth.tissues import T

# r_child = r * (territory share) ** exponent. Murray's law gives 1/3; 0.36 tapers faster,
# closer to the pulmonary arteries' measured diameter exponent (~2.5), and looks it.
RADIUS_EXPONENT = 0.36


@dataclass(frozen=True)
class Tree:
    """Segments (n, 3) start/end (x, y, z mm), radius (mm) and generation."""

    start: np.ndarray
    end: np.ndarray
    radius: np.ndarray
    generation: np.ndarray


def lung_points(labels: np.ndarray, grid: Grid, code: int, n: int,
                rng: np.random.Generator) -> np.ndarray:
    """n random points (x, y, z mm) inside the voxels of one lung code."""
    step = max(1, int(round(3.0 / grid.dx)))
    zstep = max(1, int(round(3.0 / grid.dz)))
    sub = labels[::zstep, ::step, ::step]
    k, j, i = np.nonzero(sub == code)
    if k.size == 0:
        return np.zeros((0, 3))
    pick = rng.choice(k.size, size=min(n, k.size), replace=False)
    jitter = rng.uniform(-0.5, 0.5, size=(pick.size, 3))
    x = grid.x0 + (i[pick] * step + jitter[:, 0] * step) * grid.dx
    y = grid.y0 + (j[pick] * step + jitter[:, 1] * step) * grid.dy
    z = grid.z0 + (k[pick] * zstep + jitter[:, 2] * zstep) * grid.dz
    return np.stack([x, y, z], axis=1)


def grow_tree(root: np.ndarray, points: np.ndarray, root_radius: float,
              rng: np.random.Generator, min_radius: float = 0.45,
              reach: float = 0.85) -> Tree:
    starts, ends, radii, gens = [], [], [], []
    stack = [(np.asarray(root, float), points, root_radius, 0)]
    while stack:
        start, pts, r, gen = stack.pop()
        centroid = pts.mean(axis=0)
        n = len(pts)
        leaf = n < 2 or r * 0.79 < min_radius
        frac = 1.0 if leaf else reach * rng.uniform(0.8, 1.2)
        end = start + frac * (centroid - start)
        starts.append(start)
        ends.append(end)
        radii.append(r)
        gens.append(gen)
        if leaf:
            continue
        centred = pts - centroid
        if n > 3:
            _, vecs = np.linalg.eigh(centred.T @ centred)
            axis = vecs[:, -1]
        else:
            axis = np.eye(3)[np.argmax(np.ptp(pts, axis=0))]
        proj = centred @ axis
        # asymmetric (monopodial) splits: a main branch runs on, side branches leave it
        cut = np.quantile(proj, rng.uniform(0.2, 0.45) if rng.random() < 0.5 else
                          rng.uniform(0.55, 0.8)) if n > 3 else 0.0
        side = proj > cut
        if side.all() or not side.any():
            side = np.arange(n) < n // 2
        for part in (pts[side], pts[~side]):
            child_r = r * (len(part) / n) ** RADIUS_EXPONENT
            stack.append((end, part, child_r, gen + 1))
    return Tree(np.asarray(starts), np.asarray(ends), np.asarray(radii), np.asarray(gens))


def partial_volume(radius: np.ndarray, tree: Tree, grid: Grid) -> np.ndarray:
    """Fraction of a voxel filled by a thin vessel (1 for vessels wider than a voxel)."""
    d = tree.end - tree.start
    c = np.abs(d[:, 2]) / np.maximum(np.linalg.norm(d, axis=1), 1e-6)
    area = grid.dx * grid.dy * c + grid.dx * grid.dz * (1 - c)
    return np.clip(np.pi * radius**2 / area, 0.0, 1.0)


def draw_vessels(tree: Tree, vessel: np.ndarray, labels: np.ndarray, grid: Grid,
                 offset: np.ndarray | None = None, hilar_radius: float = 3.0) -> None:
    """Vessel fraction (0..255) into `vessel`; hilar vessels >= hilar_radius become BLOOD."""
    start, end = tree.start, tree.end
    if offset is not None:
        start, end = start + offset[0], end + offset[1]
    frac = partial_volume(tree.radius, tree, grid)
    pts, r, seg = sample_tubes(start, end, tree.radius, step_mm=min(grid.dx, grid.dz) * 0.6)
    small = r < hilar_radius
    stamp_spheres(vessel, grid, pts[small], r[small],
                  np.rint(frac[seg[small]] * 255).astype(np.uint8), keep_max=True)
    big = ~small
    if big.any():
        stamp_spheres(labels, grid, pts[big], r[big], int(T.BLOOD))


def draw_airways(tree: Tree, airway: np.ndarray, labels: np.ndarray, grid: Grid,
                 min_lumen_mm: float = 0.9, big_radius: float = 3.0) -> None:
    """Bronchi along the tree: wall (1) and lumen (2) in `airway`; big ones into labels."""
    lumen = tree.radius * 0.8
    keep = lumen >= min_lumen_mm
    if not keep.any():
        return
    wall = np.maximum(0.4, lumen * 0.2)
    pts, r, seg = sample_tubes(tree.start[keep], tree.end[keep], lumen[keep],
                               step_mm=min(grid.dx, grid.dz) * 0.6)
    w = wall[keep][seg]
    big = r >= big_radius
    stamp_spheres(airway, grid, pts[~big], r[~big] + w[~big], 1)
    stamp_spheres(airway, grid, pts[~big], r[~big], 2)
    stamp_spheres(labels, grid, pts[big], r[big] + w[big], int(T.AIRWAY_WALL))
    stamp_spheres(labels, grid, pts[big], r[big], int(T.AIRWAY_AIR))


def node_offsets(tree: Tree, distance: np.ndarray, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-segment (start, end) offsets perpendicular to the branch, continuous at joints.

    A child starts where its parent ends, so its start offset is the parent's end offset;
    arteries drawn with these run beside the bronchi drawn without them.
    """
    d = tree.end - tree.start
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6)
    ref = rng.normal(size=3)
    perp = np.cross(d, ref)
    perp /= np.maximum(np.linalg.norm(perp, axis=1, keepdims=True), 1e-6)
    end_off = perp * distance[:, None]
    # parent of each segment: the segment whose end equals its start
    keys = {tuple(np.round(e, 6)): i for i, e in enumerate(tree.end)}
    start_off = np.zeros_like(end_off)
    for i, st in enumerate(tree.start):
        parent = keys.get(tuple(np.round(st, 6)))
        if parent is not None:
            start_off[i] = end_off[parent]
    return start_off, end_off
