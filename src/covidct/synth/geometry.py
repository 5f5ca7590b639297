"""Grid and drawing primitives of the phantom: superellipses, tubes, smooth random fields.

Patient coordinates are LPS mm (x right->left, y anterior->posterior, z inferior->superior),
with the in-plane origin at the centre of the field of view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# Voxel-count budget of one vectorised stamping batch (points x stamp offsets).
_STAMP_BATCH = 3_000_000


@dataclass(frozen=True)
class Grid:
    """The fine generation grid: nz sub-slices of dz mm; (ny, nx) pixels of (dy, dx) mm."""

    nz: int
    ny: int
    nx: int
    dz: float
    dy: float
    dx: float
    z0: float  # z (mm) of fine slice 0
    x0: float  # x (mm) of column 0
    y0: float  # y (mm) of row 0

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.nz, self.ny, self.nx)

    def z_of(self, k: int) -> float:
        return self.z0 + k * self.dz

    def xy(self) -> tuple[np.ndarray, np.ndarray]:
        """Broadcastable (1, nx) x and (ny, 1) y coordinates in mm (float32)."""
        x = (self.x0 + self.dx * np.arange(self.nx, dtype=np.float32))[None, :]
        y = (self.y0 + self.dy * np.arange(self.ny, dtype=np.float32))[:, None]
        return x.astype(np.float32), y.astype(np.float32)

    def to_index(self, pts_mm: np.ndarray) -> np.ndarray:
        """(n, 3) x, y, z mm -> (n, 3) nearest k, j, i (int64, maybe out of bounds)."""
        k = np.rint((pts_mm[:, 2] - self.z0) / self.dz)
        j = np.rint((pts_mm[:, 1] - self.y0) / self.dy)
        i = np.rint((pts_mm[:, 0] - self.x0) / self.dx)
        return np.stack([k, j, i], axis=1).astype(np.int64)


def superellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float,
                 ay_front: float, ay_back: float, power: float = 2.0) -> np.ndarray:
    """Level (<1 inside; rho**power) of a superellipse with different front/back half-depths.

    Separable: with x (1, nx) and y (ny, 1) grid rows the powers are taken in 1D.
    """
    ay = np.where(y < cy, ay_front, ay_back)
    u = (np.abs(x - cx) / max(ax, 1e-3)) ** power
    v = (np.abs(y - cy) / np.maximum(ay, 1e-3)) ** power
    return u + v


def ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float,
            angle_rad: float = 0.0) -> np.ndarray:
    """Normalised radius (<1 inside) of a rotated ellipse."""
    dx, dy = x - cx, y - cy
    if angle_rad:
        c, s = np.cos(angle_rad), np.sin(angle_rad)
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    return np.sqrt((dx / ax) ** 2 + (dy / ay) ** 2)


def window(x: np.ndarray, y: np.ndarray, cx: float, cy: float, half_mm: float
           ) -> tuple[slice, slice]:
    """Index slices (rows, cols) of grid rows x (1, nx), y (ny, 1) covering a square."""
    xs, ys = x.ravel(), y.ravel()
    cols = slice(int(np.searchsorted(xs, cx - half_mm)), int(np.searchsorted(xs, cx + half_mm)))
    rows = slice(int(np.searchsorted(ys, cy - half_mm)), int(np.searchsorted(ys, cy + half_mm)))
    return rows, cols


def local_ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float,
                  angle_rad: float = 0.0) -> tuple[tuple[slice, slice], np.ndarray]:
    """(window, normalised radius inside the window) of an ellipse: work only near it."""
    win = window(x, y, cx, cy, max(ax, ay) + 1.0)
    return win, ellipse(x[:, win[1]], y[win[0], :], cx, cy, ax, ay, angle_rad)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise with unit standard deviation (float32)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma,
                                    mode="wrap")
    return (field / max(float(field.std()), 1e-6)).astype(np.float32)


@dataclass(frozen=True)
class CoarseField:
    """A 3D field on a coarse isotropic grid, sampled by trilinear interpolation."""

    values: np.ndarray  # (nz, ny, nx)
    origin_mm: tuple[float, float, float]  # x, y, z of cell (0, 0, 0)
    step_mm: float

    def sample(self, x: np.ndarray, y: np.ndarray, z: np.ndarray | float) -> np.ndarray:
        x, y, z = np.broadcast_arrays(np.asarray(x, np.float32), np.asarray(y, np.float32),
                                      np.asarray(z, np.float32))
        coords = np.stack([(z.ravel() - self.origin_mm[2]) / self.step_mm,
                           (y.ravel() - self.origin_mm[1]) / self.step_mm,
                           (x.ravel() - self.origin_mm[0]) / self.step_mm])
        out = ndimage.map_coordinates(self.values, coords, order=1, mode="nearest")
        return out.reshape(x.shape).astype(np.float32)


def coarse_field(rng: np.random.Generator, grid: Grid, step_mm: float,
                 sigma_mm: float) -> CoarseField:
    """Smooth unit-variance noise covering the grid, on cells of step_mm."""
    extent = (grid.nz * grid.dz, grid.ny * grid.dy, grid.nx * grid.dx)
    shape = tuple(int(np.ceil(e / step_mm)) + 2 for e in extent)
    values = smooth_noise(rng, shape, sigma_mm / step_mm)
    origin = (grid.x0 - step_mm, grid.y0 - step_mm, grid.z0 - step_mm)
    return CoarseField(values, origin, step_mm)


def sample_tubes(starts: np.ndarray, ends: np.ndarray, radii: np.ndarray,
                 step_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points along segments, spaced <= max(step_mm, r/3): (points (n,3), radii, segment)."""
    starts = np.asarray(starts, np.float64).reshape(-1, 3)
    ends = np.asarray(ends, np.float64).reshape(-1, 3)
    radii = np.asarray(radii, np.float64).reshape(-1)
    lengths = np.linalg.norm(ends - starts, axis=1)
    step = np.maximum(step_mm, radii / 3.0)
    counts = np.ceil(lengths / step).astype(np.int64) + 1
    seg = np.repeat(np.arange(len(starts)), counts)
    first = np.cumsum(counts) - counts
    t = (np.arange(seg.size) - first[seg]) / np.maximum(counts[seg] - 1, 1)
    pts = starts[seg] + t[:, None] * (ends - starts)[seg]
    return pts, radii[seg], seg


def _sphere_offsets(radius_mm: float, grid: Grid) -> np.ndarray:
    rk = int(np.floor(radius_mm / grid.dz))
    rj = int(np.floor(radius_mm / grid.dy))
    ri = int(np.floor(radius_mm / grid.dx))
    dk, dj, di = np.meshgrid(np.arange(-rk, rk + 1), np.arange(-rj, rj + 1),
                             np.arange(-ri, ri + 1), indexing="ij")
    inside = (dk * grid.dz) ** 2 + (dj * grid.dy) ** 2 + (di * grid.dx) ** 2 <= radius_mm**2
    inside[rk, rj, ri] = True
    return np.stack([dk[inside], dj[inside], di[inside]], axis=1)


def stamp_spheres(volume: np.ndarray, grid: Grid, pts_mm: np.ndarray, radii_mm: np.ndarray,
                  values: np.ndarray | int, keep_max: bool = False) -> None:
    """Paint balls of the given radii at the points (in place).

    values: one value or one per point; keep_max keeps the larger of old and new (for
    partial-volume fractions); otherwise later points overwrite.
    """
    if len(pts_mm) == 0:
        return
    values = np.broadcast_to(np.asarray(values, dtype=volume.dtype), (len(pts_mm),))
    idx = grid.to_index(pts_mm)
    quantum = np.where(radii_mm < 3.0, 0.25, 1.0)
    rbin = np.round(radii_mm / quantum) * quantum
    flat_vol = volume.reshape(-1)
    strides = np.array([grid.ny * grid.nx, grid.nx, 1], dtype=np.int64)
    shape = np.array(grid.shape, dtype=np.int64)
    for radius in np.unique(rbin):
        sel = np.flatnonzero(rbin == radius)
        offsets = _sphere_offsets(float(radius), grid)
        batch = max(1, _STAMP_BATCH // len(offsets))
        for start in range(0, sel.size, batch):
            part = sel[start:start + batch]
            vox = idx[part][:, None, :] + offsets[None, :, :]
            ok = np.all((vox >= 0) & (vox < shape), axis=2)
            flat = (vox @ strides)[ok]
            val = np.broadcast_to(values[part][:, None], ok.shape)[ok]
            if keep_max:
                flat_vol[flat] = np.maximum(flat_vol[flat], val)
            else:
                flat_vol[flat] = val


def draw_polyline(volume: np.ndarray, grid: Grid, nodes_mm: np.ndarray,
                  radius_mm: float | np.ndarray, value: int, step_mm: float = 0.5) -> None:
    """A tube of (per-node) radius through consecutive nodes (x, y, z mm)."""
    nodes = np.asarray(nodes_mm, dtype=np.float64)
    radii = np.broadcast_to(np.asarray(radius_mm, dtype=np.float64), (len(nodes),))
    seg_r = 0.5 * (radii[:-1] + radii[1:])
    pts, r, _ = sample_tubes(nodes[:-1], nodes[1:], seg_r, step_mm)
    stamp_spheres(volume, grid, pts, r, value)
