"""Random fields the held-out family draws its shapes and textures from.

- `smooth_field`: a Gaussian random field (white noise through a Gaussian filter, unit SD)
  drawn on a coarse grid and interpolated, correlation length in mm;
- `tube_profile`: tubes along the curves where two independent smooth fields are both
  zero (level-set intersections): vessels, airways, air bronchograms without growing trees;
- `harmonic_radius`: a blob's radius over directions as a random sum of real spherical
  harmonics (degrees 1-4), the shape model of lesions and nodules;
- `cell_walls`: the walls of a Voronoi tessellation of random points (interlobular septa,
  honeycomb walls) as a distance in mm to the nearest wall.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, special
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class Grid:
    """An axial grid: arrays are (z, y, x); mm coordinates in LPS (x to the patient's left,
    y posterior, z superior) of voxel centres are origin + index * spacing."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]  # dz, dy, dx mm
    origin: tuple[float, float, float]  # z0, y0, x0 mm

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """1-D mm coordinates along z, y, x (float32)."""
        return tuple(np.asarray(o + s * np.arange(n), np.float32)  # type: ignore[return-value]
                     for n, s, o in zip(self.shape, self.spacing, self.origin, strict=True))

    def mesh(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable z (n,1,1), y (1,n,1), x (1,1,n) mm coordinates."""
        z, y, x = self.axes()
        return z[:, None, None], y[None, :, None], x[None, None, :]


def smooth_field(rng: np.random.Generator, grid: Grid, corr_mm: float,
                 step_mm: float | None = None) -> np.ndarray:
    """A unit-SD Gaussian random field on `grid` (float32), correlation length `corr_mm`.

    Drawn on a coarse grid of `step_mm` (default corr_mm / 2.5, >= 1.2 mm) and trilinearly
    interpolated; never finer than 0.8 x the grid's finest step.
    """
    step = step_mm or max(corr_mm / 2.5, 0.8 * min(grid.spacing), 1.2)
    size = [max(int(np.ceil(n * s / step)) + 3, 4) for n, s in zip(grid.shape, grid.spacing,
                                                                     strict=True)]
    noise = rng.standard_normal(size).astype(np.float32)
    coarse = ndimage.gaussian_filter(noise, corr_mm / step / 2.0, mode="wrap", truncate=3.0)
    coarse /= max(float(coarse.std()), 1e-6)
    coords = [np.arange(n, dtype=np.float32) * s / step + 1.0
              for n, s in zip(grid.shape, grid.spacing, strict=True)]
    return _interpolate(coarse, coords)


def _interpolate(coarse: np.ndarray, coords: list[np.ndarray]) -> np.ndarray:
    """Separable linear interpolation of `coarse` at the 1-D index coordinates per axis."""
    out = coarse
    for axis, c in enumerate(coords):
        i0 = np.clip(np.floor(c).astype(np.int64), 0, out.shape[axis] - 2)
        w = (c - i0).astype(np.float32)
        a = np.take(out, i0, axis=axis)
        b = np.take(out, i0 + 1, axis=axis)
        shape = [1] * out.ndim
        shape[axis] = len(c)
        w = w.reshape(shape)
        out = a * (1 - w) + b * w
    return out.astype(np.float32)


def tube_profile(f1: np.ndarray, f2: np.ndarray, corr_mm: float,
                 radius_mm: np.ndarray | float) -> np.ndarray:
    """Fraction (0..1) of each voxel inside tubes of `radius_mm` along {f1 = 0} & {f2 = 0}.

    For unit-SD fields of correlation length L the gradient is about 1 / L per mm, so
    sqrt(f1^2 + f2^2) * L approximates the distance (mm) to the curve.
    """
    dist = np.sqrt(f1 * f1 + f2 * f2) * np.float32(corr_mm * 0.6)
    return np.clip(np.asarray(radius_mm, np.float32) - dist + 0.5, 0.0, 1.0)


def harmonic_radius(rng: np.random.Generator, roughness: float,
                    max_degree: int = 4) -> np.ndarray:
    """Real spherical-harmonic coefficients c[l, m + l] for l = 1..max_degree (l = 0 unused).

    Coefficient SD roughness / l: low degrees bend the blob, high ones make it lobulated.
    """
    coef = np.zeros((max_degree + 1, 2 * max_degree + 1))
    for degree in range(1, max_degree + 1):
        coef[degree, : 2 * degree + 1] = rng.normal(0.0, roughness / degree, 2 * degree + 1)
    return coef


def radius_factor(coef: np.ndarray, dz: np.ndarray, dy: np.ndarray,
                  dx: np.ndarray) -> np.ndarray:
    """1 + sum_lm c_lm Y_lm(direction of (dx, dy, dz)), clipped to [0.35, 2].

    The sum is tabulated on a 4-degree (theta, phi) grid and looked up (nearest).
    """
    n_theta, n_phi = 46, 91
    theta_t = np.linspace(0.0, np.pi, n_theta)[:, None]
    phi_t = np.linspace(0.0, 2 * np.pi, n_phi)[None, :]
    table = np.ones((n_theta, n_phi))
    for degree in range(1, coef.shape[0]):
        for m in range(-degree, degree + 1):
            c = coef[degree, m + degree]
            if c == 0.0:
                continue
            y = special.sph_harm_y(degree, abs(m), theta_t, phi_t)
            real = np.sqrt(2) * (y.imag if m < 0 else y.real) if m else y.real
            table += c * real
    table = np.clip(table, 0.35, 2.0).astype(np.float32)
    r = np.sqrt(dx * dx + dy * dy + dz * dz) + 1e-6
    theta = np.arccos(np.clip(dz / r, -1.0, 1.0))
    phi = np.mod(np.arctan2(dy, dx), 2 * np.pi)
    i = np.rint(theta * ((n_theta - 1) / np.pi)).astype(np.intp)
    j = np.rint(phi * ((n_phi - 1) / (2 * np.pi))).astype(np.intp)
    return table[i, j]


def cell_walls(rng: np.random.Generator, points_zyx: np.ndarray, cell_mm: float,
               lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Distance (mm) from each point (n, 3) to the nearest wall of a Voronoi tessellation.

    Seeds are spread uniformly in the box [lo, hi] (mm, z y x) at one per cell_mm^3; the
    wall distance is half the difference of the distances to the two nearest seeds.
    """
    extent = np.maximum(hi - lo, 1.0) + 2 * cell_mm
    count = int(np.clip(np.prod(extent) / cell_mm**3, 8, 400_000))
    seeds = lo - cell_mm + rng.random((count, 3)) * extent
    dist, _ = cKDTree(seeds).query(points_zyx, k=2)
    return (0.5 * (dist[:, 1] - dist[:, 0])).astype(np.float32)
