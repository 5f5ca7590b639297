"""Regions and blocks of (z, y, x) arrays: bounding boxes, block reduction and its
nearest-neighbour inverse.

The lung stage pools in-plane (covidct.anatomy), the lesion stage works on a coarser grid
(covidct.lesions), and several stages work inside a mask's bounding box grown by a filter's
reach; these are the shared pieces.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Factors = tuple[int, int, int]


def bounding_box(mask: np.ndarray, margin: int | Sequence[int] = 0) -> tuple[slice, ...]:
    """The slices of a non-empty mask's bounding box, grown by `margin` voxels (one value,
    or one per axis) and clipped to the array."""
    margins = [margin] * mask.ndim if isinstance(margin, int) else list(margin)
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        present = np.flatnonzero(mask.any(axis=other))
        box.append(slice(max(int(present[0]) - margins[axis], 0),
                         min(int(present[-1]) + 1 + margins[axis], mask.shape[axis])))
    return tuple(box)


def block_reduce(array: np.ndarray, factors: Factors, reduce: str) -> np.ndarray:
    """Blocks of fz x fy x fx voxels of a (z, y, x) array: mean ('mean', float32), majority
    or any ('majority', 'any': bool); edge-padded to multiples. Sums of strided views (no
    reshaped float copy of the whole array), exact for integer HU."""
    array = np.asarray(array)
    if tuple(factors) == (1, 1, 1):
        return array.astype(np.float32) if reduce == "mean" else array.astype(bool)
    pads = [(0, -n % f) for n, f in zip(array.shape, factors, strict=True)]
    if any(p for _, p in pads):
        array = np.pad(array, pads, mode="edge")
    fz, fy, fx = factors
    acc = np.zeros(tuple(n // f for n, f in zip(array.shape, factors, strict=True)),
                   dtype=np.float32 if reduce == "mean" else np.uint16)
    for a in range(fz):
        for b in range(fy):
            for c in range(fx):
                acc += array[a::fz, b::fy, c::fx]
    n = fz * fy * fx
    if reduce == "mean":
        acc /= n
        return acc
    return acc * 2 >= n if reduce == "majority" else acc > 0


def block_upsample(array: np.ndarray, factors: Factors, shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour inverse of block_reduce: each value repeated over its block, cropped
    to `shape`."""
    for axis, f in enumerate(factors):
        if f > 1:
            array = np.repeat(array, f, axis=axis)
    return array[:shape[0], :shape[1], :shape[2]]
