"""Is a lobe-labelled slice file in the right craniocaudal order? An anatomical check.

Slice labels are often stored as an array indexed from the top of the chest (the order a
radiologist scrolls) and later written against slice positions sorted the other way. The
labels then still match every slice, but each belongs to its mirror image: a detector that
is right scores badly, one that is wrong scores well. Nothing in the file shows it.

Lobe labels show it. The upper lobes lie above the middle and lower lobes: the right upper
lobe (RUL) above the right middle (RML) and right lower (RLL) lobes, the left upper lobe (LUL)
above the left lower lobe (LLL) (standard thoracic anatomy; the fissures run obliquely, so the
lobes overlap in z, but their labelled slices' medians keep this order). When every such pair
that has labels says the opposite, the rows are almost certainly reversed.

The check cannot decide from a file without upper-lobe labels (e.g. a lower-lobe pneumonia);
it then says nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# (upper lobe, lobe below it) pairs that anatomy orders along the body axis.
UPPER_BELOW_PAIRS = (("RUL", "RML"), ("RUL", "RLL"), ("LUL", "LLL"))
MIN_LABELLED_SLICES = 3  # a lobe's median z from fewer slices says little


def lobe_medians_mm(z_mm: np.ndarray, lobes: Mapping[str, np.ndarray]
                    ) -> dict[str, tuple[int, float]]:
    """Per lobe with labelled slices: (their count, their median z in mm).

    z_mm: (z,) slice positions (+superior); lobes: lobe -> (z,) flags (1 labelled, 0 not,
    -1 no row). Raises ValueError when a lobe's flags do not match z_mm's shape.
    """
    z_mm = np.asarray(z_mm, dtype=np.float64)
    out: dict[str, tuple[int, float]] = {}
    for name, flags in lobes.items():
        flags = np.asarray(flags)
        if flags.shape != z_mm.shape:
            raise ValueError(f"lobe {name}: {flags.shape} flags for {z_mm.shape} slices")
        on = flags == 1
        if on.any():
            out[name] = (int(on.sum()), float(np.median(z_mm[on])))
    return out


def lobe_order_contradiction(z_mm: np.ndarray, lobes: Mapping[str, np.ndarray]) -> str | None:
    """A sentence when the lobe labels put upper lobes below lower ones; else None.

    z_mm: (z,) each slice's position on the inferior-superior axis in mm (+superior, LPS z,
    `Volume.slice_positions_mm`). lobes: lobe name -> (z,) int flags (1 labelled, 0 not,
    -1 no row). Returns None when no pair in `UPPER_BELOW_PAIRS` has at least
    `MIN_LABELLED_SLICES` labelled slices on both sides, or when any such pair is in
    anatomical order.
    """
    medians = {name: z for name, (count, z) in lobe_medians_mm(z_mm, lobes).items()
               if count >= MIN_LABELLED_SLICES}
    pairs = [(up, low) for up, low in UPPER_BELOW_PAIRS if up in medians and low in medians]
    if not pairs or any(medians[up] > medians[low] for up, low in pairs):
        return None
    found = "; ".join(f"{up} at median z {medians[up]:.0f} mm lies below {low} "
                      f"({medians[low]:.0f} mm)" for up, low in pairs)
    return (f"the lobe labels contradict anatomy: {found}, but upper lobes lie above the "
            "middle and lower lobes. The label rows are probably in reversed slice order (an "
            "array indexed from the top written against ascending positions); check the "
            "label file before trusting the slice AUC")
