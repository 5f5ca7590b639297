"""Reference masks of public datasets brought onto covidct's conventions.

Lung masks become uint8 (0 background, 1 right, 2 left); infection masks become uint8 0/1;
per-slice labels are derived from the infection area. Arrays are (z, y, x) on the
canonical grid, where a low x index is the patient's right.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
from scipy import ndimage

from covidct.errors import DataError

logger = logging.getLogger(__name__)

# A slice is positive when its infection covers >= 0.5 % of its lung and >= 20 pixels.
MIN_INFECTION_LUNG_FRACTION = 0.005
MIN_INFECTION_PIXELS = 20

# Lung label conventions of the supported datasets.
RIGHT_LEFT = "right-left"  # 1 right, 2 left (covidct, CIP/COPDGene)
LEFT_RIGHT = "left-right"  # 1 left, 2 right (COVID-19-CT-Seg, Ma et al.)
BY_SIDE = "by-side"  # unknown: labels assigned by which side of the patient they lie on
LUNG_CONVENTIONS = (RIGHT_LEFT, LEFT_RIGHT, BY_SIDE)

# A component of a single-label mask goes wholly to one side when this share of it lies there.
_ONE_SIDE_SHARE = 0.9


def slice_labels_from_masks(infection: np.ndarray, lung: np.ndarray | None = None, *,
                            min_lung_fraction: float = MIN_INFECTION_LUNG_FRACTION,
                            min_pixels: int = MIN_INFECTION_PIXELS) -> np.ndarray:
    """Bool per slice: infection area >= min_lung_fraction of lung area and >= min_pixels.

    With a lung mask only infection inside the lung counts (as covidct.synth's truth rule);
    without one, only the pixel count applies.
    """
    infected = np.asarray(infection).reshape(infection.shape[0], -1) > 0
    if lung is None:
        return infected.sum(axis=1) >= min_pixels
    in_lung = np.asarray(lung).reshape(lung.shape[0], -1) > 0
    area = (infected & in_lung).sum(axis=1)
    lung_area = in_lung.sum(axis=1)
    return (area >= min_pixels) & (area >= min_lung_fraction * lung_area) & (lung_area > 0)


def infection_from_labels(mask: np.ndarray, infection_labels: Iterable[int] | None) -> np.ndarray:
    """uint8 0/1 infection mask; `infection_labels` None means any non-zero label."""
    mask = np.asarray(mask)
    if infection_labels is None:
        return (mask > 0).astype(np.uint8)
    return np.isin(np.rint(mask).astype(np.int64), list(infection_labels)).astype(np.uint8)


def lung_to_right_left(mask: np.ndarray, convention: str, *, per_slice: bool = False,
                       labels: tuple[int, int] = (1, 2)) -> np.ndarray:
    """A lung mask in covidct's convention (1 right, 2 left) from a dataset's convention.

    Masks with a single lung label (or `BY_SIDE` with one label present) are split by
    patient side. `per_slice` treats every slice as its own image (stacks of slices from
    different patients). Other labels (airway, infection) are dropped.
    """
    if convention not in LUNG_CONVENTIONS:
        raise DataError(f"Unknown lung label convention {convention!r}; "
                        f"expected one of {', '.join(LUNG_CONVENTIONS)}.")
    mask = np.rint(np.asarray(mask)).astype(np.int64)
    present = [lab for lab in labels if np.any(mask == lab)]
    others = sorted(set(np.unique(mask).tolist()) - {0, *labels})
    if len(present) < 2 and not others:
        # A binary or single-label lung mask.
        return split_lung_sides(mask > 0, per_slice=per_slice)
    if len(present) < 2:
        # Only one of the two labels: that lung alone, or a whole-lung label plus extras.
        return split_lung_sides(np.isin(mask, present), per_slice=per_slice)
    first, second = labels
    out = np.zeros(mask.shape, dtype=np.uint8)
    if convention == LEFT_RIGHT:
        out[mask == first], out[mask == second] = 2, 1
    else:
        out[mask == first], out[mask == second] = 1, 2
    right_x, left_x = _mean_x(out == 1), _mean_x(out == 2)
    if convention == BY_SIDE and right_x > left_x:
        out = np.where(out > 0, 3 - out, 0).astype(np.uint8)
    elif convention != BY_SIDE and right_x > left_x:
        logger.warning("Lung labels given as %s lie on the opposite sides (label of the right "
                       "lung has the larger mean x); check the dataset's convention.", convention)
    return out


def split_lung_sides(lung: np.ndarray, *, per_slice: bool = False) -> np.ndarray:
    """Split a binary lung mask into right (1) and left (2) by patient side.

    The midline is the centre of the mask's x extent. Connected components lying
    (>= 90 %) on one side go wholly to that side; components across the midline (lungs
    touching at the anterior junction) are cut at the midline.
    """
    lung = np.asarray(lung).astype(bool)
    if per_slice:
        out = np.zeros(lung.shape, dtype=np.uint8)
        for k in range(lung.shape[0]):
            out[k] = split_lung_sides(lung[k : k + 1])[0]
        return out
    out = np.zeros(lung.shape, dtype=np.uint8)
    if not lung.any():
        return out
    xs = np.nonzero(lung.any(axis=tuple(range(lung.ndim - 1))))[0]
    midline = (xs[0] + xs[-1]) / 2.0
    x_index = np.arange(lung.shape[-1])
    right_side = np.broadcast_to(x_index < midline, lung.shape)
    components, count = ndimage.label(lung)
    for index in range(1, count + 1):
        component = components == index
        share_right = float(np.mean(right_side[component]))
        if share_right >= _ONE_SIDE_SHARE:
            out[component] = 1
        elif share_right <= 1.0 - _ONE_SIDE_SHARE:
            out[component] = 2
        else:
            out[component & right_side] = 1
            out[component & ~right_side] = 2
    return out


def _mean_x(mask: np.ndarray) -> float:
    xs = np.nonzero(mask)[-1]
    return float(xs.mean()) if xs.size else float("nan")


def align_to_grid(array: np.ndarray, affine_src: np.ndarray, affine_dst: np.ndarray,
                  shape_dst: tuple[int, ...], *, name: str = "mask",
                  tolerance_mm: float = 0.5) -> np.ndarray:
    """Re-index `array` (on affine_src) onto the voxel grid of affine_dst.

    Handles axis permutations and flips of the same grid (two readers with different
    orientation choices); raises DataError when the grids differ otherwise.
    """
    affine_src = np.asarray(affine_src, dtype=np.float64)
    affine_dst = np.asarray(affine_dst, dtype=np.float64)
    if np.allclose(affine_src, affine_dst, atol=1e-3):
        if array.shape != tuple(shape_dst):
            raise DataError(f"The {name} has shape {array.shape}, the image {tuple(shape_dst)}; "
                            "a mask must cover the image voxel for voxel.")
        return array
    # Voxel of src for each voxel of dst: src_index = inv(A_src) @ A_dst @ dst_index.
    mapping = np.linalg.inv(affine_src) @ affine_dst
    rot = np.rint(mapping[:3, :3])
    scale_ok = np.allclose(mapping[:3, :3], rot, atol=1e-2)
    perm_ok = scale_ok and all(np.count_nonzero(rot[:, c]) == 1 for c in range(3))
    if not perm_ok:
        raise DataError(f"The {name} is not on the image's voxel grid (different spacing or "
                        "rotation); resample it onto the image first.")
    out = array
    order = [int(np.nonzero(rot[:, c])[0][0]) for c in range(3)]
    out = np.transpose(out, order)
    for c in range(3):
        if rot[order[c], c] < 0:
            out = np.flip(out, axis=c)
    if out.shape != tuple(shape_dst):
        raise DataError(f"The {name} has shape {out.shape} once reoriented, the image "
                        f"{tuple(shape_dst)}; a mask must cover the image voxel for voxel.")
    # After permuting and flipping, the remaining offset must be zero (same origin).
    corner_dst = affine_dst @ np.array([0, 0, 0, 1.0])
    src_index = np.linalg.inv(affine_src) @ corner_dst
    expected = [0 if rot[order[c], c] > 0 else array.shape[order[c]] - 1 for c in range(3)]
    if np.max(np.abs(src_index[[order[c] for c in range(3)]] - expected)) * min(
            np.linalg.norm(affine_dst[:3, :3], axis=0)) > tolerance_mm:
        raise DataError(f"The {name} is offset from the image (different origin); "
                        "resample it onto the image first.")
    return np.ascontiguousarray(out)
