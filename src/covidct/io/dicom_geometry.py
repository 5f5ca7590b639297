"""Geometry of a stack of DICOM images: order, spacing, affine and its problems.

Slices are sorted by their position along the slice normal (never by file name or
InstanceNumber). The slice step comes from the positions, not SliceThickness.

A stack whose spacing is not uniform (the spacing changes part-way, slices are
missing, or positions are irregular) is put on a uniform grid along the stack, as
dcm2niix's "equalized" output does, so that every downstream figure (volumes, zones,
z positions) and every mask written on that grid is true in world space: the grid
runs from the first to the last true slice with the finest regular step, and each
grid slice is the nearest true slice (no new HU values are made up; each true slice
covers its true extent, half-way to its neighbours). The true positions are kept in
``slice_positions_mm`` and which true slice each grid slice shows in
``source_slice_index``. Problems are reported as warnings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from covidct.io.dicom_scan import CTImage

_POSITION_TOL_MM = 0.01
_TILT_TOL_DEG = 0.05
_MAX_GRID_FACTOR = 4  # a grid never has more than this many times the true slices


@dataclass
class StackGeometry:
    images: list[CTImage]  # one per array slice, inferior->superior (repeats when equalized)
    affine: np.ndarray  # voxel (k, j, i) -> LPS mm, k along the sorted stack
    warnings: list[str] = field(default_factory=list)
    gantry_tilt_deg: float = 0.0
    uniform: bool = True
    slice_positions_mm: list[list[float]] | None = None  # true positions when not uniform
    source_slice_index: list[int] | None = None  # true slice shown by each grid slice


def _runs(gaps: np.ndarray, tol: float) -> list[tuple[int, int, float]]:
    """Runs of consecutive equal gaps: (start, stop, mean gap)."""
    runs: list[tuple[int, int, float]] = []
    start = 0
    for n in range(1, len(gaps) + 1):
        if n == len(gaps) or abs(gaps[n] - gaps[start]) > tol:
            runs.append((start, n, float(np.mean(gaps[start:n]))))
            start = n
    return runs


def stack_geometry(images: list[CTImage], thickness_mm: float | None) -> StackGeometry:
    warnings: list[str] = []
    first = images[0]
    normal = first.normal
    depth = np.array([img.position @ normal for img in images])
    order = sorted(range(len(images)), key=lambda n: (depth[n], images[n].instance_number))
    images = [images[n] for n in order]
    depth = depth[order]

    keep = [0]
    for n in range(1, len(images)):
        if depth[n] - depth[keep[-1]] > _POSITION_TOL_MM:
            keep.append(n)
    if len(keep) < len(images):
        dropped = len(images) - len(keep)
        warnings.append(
            f"{dropped} image(s) share a slice position with another image of the series "
            "(duplicate positions, e.g. two acquisitions in one series); the one with the lowest "
            "InstanceNumber was kept at each position"
        )
        images = [images[n] for n in keep]
        depth = depth[keep]

    dr, dc = first.pixel_spacing
    affine = np.eye(4)
    affine[:3, 1] = first.col_dir * dr
    affine[:3, 2] = first.row_dir * dc
    affine[:3, 3] = images[0].position
    geometry = StackGeometry(images=images, affine=affine, warnings=warnings)

    if len(images) == 1:
        step = float(thickness_mm) if thickness_mm and thickness_mm > 0 else 1.0
        if not thickness_mm:
            warnings.append("a single slice without SliceThickness: its thickness was set to 1 mm")
        affine[:3, 0] = normal * step
        return geometry

    gaps = np.diff(depth)
    step = float(np.median(gaps))
    span = images[-1].position - images[0].position
    direction = span / np.linalg.norm(span)
    cos_tilt = float(abs(direction @ normal))
    affine[:3, 0] = direction * (step / cos_tilt)
    tilt = math.degrees(math.acos(min(1.0, cos_tilt)))
    if tilt > _TILT_TOL_DEG:
        geometry.gantry_tilt_deg = tilt
        warnings.append(
            f"gantry tilt of {tilt:.2f} degrees: slices are offset in-plane along the stack; "
            "the affine is sheared to keep the exact geometry (no resampling was done)"
        )

    tol = max(_POSITION_TOL_MM, 0.01 * step)
    if np.any(np.abs(gaps - step) > tol):
        _equalize(geometry, depth, gaps, span, tol)
    return geometry


def _equalize(geometry: StackGeometry, depth: np.ndarray, gaps: np.ndarray,
              span: np.ndarray, tol: float) -> None:
    """Put a non-uniform stack on a uniform grid of nearest true slices (see module doc)."""
    images = geometry.images
    runs = _runs(gaps, tol)
    regular = [r for r in runs if r[1] - r[0] >= 2] or runs
    grid_step = min(r[2] for r in regular)
    length = float(depth[-1] - depth[0])
    if length / grid_step + 1 > _MAX_GRID_FACTOR * len(images):
        grid_step = float(np.median(gaps))
    n_grid = int(round(length / grid_step)) + 1
    grid = depth[0] + np.arange(n_grid) * grid_step
    right = np.clip(np.searchsorted(depth, grid), 1, len(depth) - 1)
    nearest = np.where(grid - depth[right - 1] <= depth[right] - grid, right - 1, right)

    geometry.uniform = False
    geometry.slice_positions_mm = [img.position.tolist() for img in images]
    geometry.source_slice_index = [int(n) for n in nearest]
    geometry.images = [images[n] for n in nearest]
    direction = span / np.linalg.norm(span)
    geometry.affine[:3, 0] = direction * (grid_step / float(abs(direction @ images[0].normal)))

    def regular_step(n: int) -> bool:  # run n (if any) has the grid step
        return not 0 <= n < len(runs) or abs(runs[n][2] - grid_step) <= tol

    isolated = [r for n, r in enumerate(runs)
                if r[1] - r[0] == 1 and r[2] > 1.5 * grid_step
                and abs(r[2] / grid_step - round(r[2] / grid_step)) < 0.25
                and regular_step(n - 1) and regular_step(n + 1)]
    changes = [r for r in runs if r[1] - r[0] >= 2 and abs(r[2] - grid_step) > tol]
    grid_text = (
        f"the volume was put on a uniform {grid_step:.3f} mm grid of {n_grid} "
        f"slices from the {len(images)} true slices, each grid slice showing the nearest true "
        "slice, so volumes and positions follow each slice's true position and extent "
        f"({n_grid - len(set(geometry.source_slice_index))} grid slice(s) repeat a neighbour; "
        "true positions in metadata['slice_positions_mm'])"
    )
    if changes:
        parts = ", ".join(
            f"{r[2]:.3f} mm for slices {depth[r[0]]:.2f}..{depth[r[1]]:.2f} mm" for r in runs
            if r[1] - r[0] >= 2
        )
        geometry.warnings.append(
            f"slice spacing changes part-way along the series ({parts} along the slice normal); "
            f"no slice is missing; {grid_text}"
        )
    if isolated:
        n_missing = sum(int(round(r[2] / grid_step)) - 1 for r in isolated)
        where = ", ".join(f"{depth[r[0]]:.2f}..{depth[r[1]]:.2f} mm" for r in isolated[:5])
        geometry.warnings.append(
            f"missing slice(s): about {n_missing} slice(s) absent between positions {where} "
            f"along the slice normal (usual step {grid_step:.3f} mm); the gap shows the nearest "
            "true slices"
        )
    if not changes:
        geometry.warnings.append(
            f"non-uniform slice spacing: steps range {gaps.min():.3f}..{gaps.max():.3f} mm; "
            f"{grid_text}"
        )
