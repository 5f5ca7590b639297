"""Reorder array axes to the canonical axial order without resampling.

Canonical order (as ``Volume.from_spacing``): array axis 0 runs inferior->superior
(+S), axis 1 anterior->posterior (+P), axis 2 right->left (+L). Only axis
permutations and flips are applied; the affine is adjusted so every voxel keeps its
exact world position.
"""

from __future__ import annotations

from itertools import permutations

import numpy as np

# LPS component that each canonical array axis should follow: z->S (2), y->P (1), x->L (0).
_TARGET_LPS = (2, 1, 0)


def canonical_axes(affine: np.ndarray) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """The permutation and flips that bring ``affine``'s grid closest to canonical.

    Returns (perm, flips): new axis t is old axis perm[t], flipped when flips[t].
    """
    cols = np.asarray(affine, dtype=np.float64)[:3, :3]
    unit = cols / np.linalg.norm(cols, axis=0)
    best = max(
        permutations(range(3)),
        key=lambda p: sum(abs(unit[_TARGET_LPS[t], p[t]]) for t in range(3)),
    )
    flips = tuple(bool(unit[_TARGET_LPS[t], best[t]] < 0) for t in range(3))
    return best, flips  # type: ignore[return-value]


def to_canonical(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Permute/flip a 3D ``array`` (indexed like ``affine``'s voxel axes) into canonical order."""
    affine = np.asarray(affine, dtype=np.float64)
    perm, flips = canonical_axes(affine)
    out = np.transpose(array, perm)
    new = np.eye(4)
    new[:3, :3] = affine[:3, list(perm)]
    new[:3, 3] = affine[:3, 3]
    for t, flip in enumerate(flips):
        if flip:
            out = np.flip(out, axis=t)
            new[:3, 3] += (out.shape[t] - 1) * new[:3, t]
            new[:3, t] = -new[:3, t]
    return np.ascontiguousarray(out), new


def orientation_label(affine: np.ndarray) -> str:
    """'axial', 'coronal', 'sagittal' or 'oblique' from the direction of array axis 0."""
    normal = np.asarray(affine, dtype=np.float64)[:3, 0]
    return plane_of_normal(normal)


def plane_of_normal(normal: np.ndarray, tolerance: float = 0.8) -> str:
    """Name the imaging plane whose normal (LPS) is ``normal``; tolerant of tilt."""
    unit = np.abs(np.asarray(normal, dtype=np.float64) / np.linalg.norm(normal))
    names = ("sagittal", "coronal", "axial")
    axis = int(np.argmax(unit))
    return names[axis] if unit[axis] >= tolerance else "oblique"


def axis_codes(affine: np.ndarray) -> str:
    """Three letters naming where each array axis (z, y, x) points, e.g. 'SPL'."""
    letters = (("L", "R"), ("P", "A"), ("S", "I"))
    cols = np.asarray(affine, dtype=np.float64)[:3, :3]
    out = []
    for c in range(3):
        lps = int(np.argmax(np.abs(cols[:, c])))
        out.append(letters[lps][0] if cols[lps, c] > 0 else letters[lps][1])
    return "".join(out)
