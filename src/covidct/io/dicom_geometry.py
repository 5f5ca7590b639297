"""Geometry of a stack of DICOM images: order, spacing, affine and its problems.

Slices are sorted by their position along the slice normal (never by file name or
InstanceNumber). The slice step comes from the positions, not SliceThickness.
Problems (duplicate positions, missing slices, non-uniform spacing, gantry tilt) are
reported as warnings; the array is never resampled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from covidct.io.dicom_scan import CTImage

_POSITION_TOL_MM = 0.01
_TILT_TOL_DEG = 0.05


@dataclass
class StackGeometry:
    images: list[CTImage]  # sorted inferior->superior along the normal, duplicates removed
    affine: np.ndarray  # voxel (k, j, i) -> LPS mm, k along the sorted stack
    warnings: list[str] = field(default_factory=list)
    gantry_tilt_deg: float = 0.0
    uniform: bool = True
    slice_positions_mm: list[list[float]] | None = None  # exact positions when not uniform


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
        geometry.uniform = False
        geometry.slice_positions_mm = [img.position.tolist() for img in images]
        missing = [(depth[n], depth[n + 1]) for n in range(len(gaps)) if gaps[n] > 1.5 * step]
        if missing:
            n_missing = sum(int(round(gaps[n] / step)) - 1 for n in range(len(gaps))
                            if gaps[n] > 1.5 * step)
            where = ", ".join(f"{a:.2f}..{b:.2f} mm" for a, b in missing[:5])
            warnings.append(
                f"missing slice(s): about {n_missing} slice(s) absent between positions {where} "
                f"along the slice normal (usual step {step:.3f} mm)"
            )
        warnings.append(
            f"non-uniform slice spacing: steps range {gaps.min():.3f}..{gaps.max():.3f} mm "
            f"(median {step:.3f} mm); the affine uses the median step from the first slice, so "
            "positions after an irregular step are approximate; exact positions are in "
            "metadata['slice_positions_mm']"
        )
    return geometry
