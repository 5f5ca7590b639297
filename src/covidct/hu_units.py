"""Is a volume CT in Hounsfield units? Non-finite voxels, and values that are not HU.

Two checks run on every input before analysis:

``replace_nonfinite``
    NaN, +inf and -inf voxels (NIfTI exports often write NaN outside the field of
    view) become -1024 HU, i.e. air/padding, with one warning on the volume. Without
    this a NaN is cast to 0 HU (water) by ``covidct convert`` and poisons every mean.

``hounsfield_problems`` / ``require_hounsfield``
    The values must look like CT in Hounsfield units. The rules, measured on a
    strided subsample of at most ~1 M finite voxels (exact for small volumes):

    1. **Air is present.** CT in HU has air near -1000 HU (outside the body, in the
       lungs, trachea, bowel), so the 0.5th percentile ``p0.5`` must be
       <= -500 HU (``AIR_PERCENTILE`` / ``AIR_MAX_HU``). On the public series in
       ``shared/data/real`` ``p0.5`` is -1001 to -2048 (padding of -2048/-3024 is HU
       too and passes); the tightest field of view, a CT-angiography crop around the
       heart (TotalSegmentator ``ct_cropped``), has ``p0.5`` = -1007 and
       ``p1`` = -994. Data normalised to 0..1 or -1..1, 8-bit 0..255 exports, raw
       12/16-bit stored values without RescaleIntercept (0..4095, 0..65535) and
       z-scored data all have ``p0.5`` > -500 and are refused here.
    2. **Nothing absurdly bright.** The 99th percentile must be <= 4000 HU
       (``BRIGHT_MAX_HU``): bone is below ~2000 HU and metal is far less than 1 %
       of a chest CT (real series: 99th percentile 307..729 HU). Values scaled up
       (e.g. a RescaleSlope applied twice, or HU x 1000) fail here.
    3. **At least one finite voxel.**

    When rule 1 fails with no negative value at all, the message names the classic
    cause from the range found (0..1: normalised; 0..255: an 8-bit image export;
    0..4095 or 0..65535: stored pixel values with RescaleSlope/RescaleIntercept not
    applied). Every message gives the minimum, the 1st and 99th percentiles and
    how to fix the input.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from covidct.errors import InputError
from covidct.volume import Volume

__all__ = [
    "AIR_MAX_HU",
    "AIR_PERCENTILE",
    "BRIGHT_MAX_HU",
    "PADDING_HU",
    "hounsfield_problems",
    "replace_nonfinite",
    "require_hounsfield",
]

logger = logging.getLogger(__name__)

PADDING_HU = -1024
"""HU given to non-finite voxels: air, the usual padding value."""

# Non-finite voxels enclosed by the image on their slice (not padding at its edges) are a
# damaged image: as air they would become lung. At least this much of them is refused.
MAX_ENCLOSED_NONFINITE_CM3 = 1.0

AIR_PERCENTILE = 0.5
"""Percentile (of the finite voxels) that must reach air."""

AIR_MAX_HU = -500.0
"""The AIR_PERCENTILE-th percentile must be at most this (air is about -1000 HU)."""

BRIGHT_PERCENTILE = 99.0
BRIGHT_MAX_HU = 4000.0
"""The 99th percentile must be at most this (bone < ~2000 HU; metal is rare)."""

_SAMPLE_VOXELS = 1_000_000

_FIX = (
    "Convert the image to Hounsfield units first: for DICOM, apply RescaleSlope and "
    "RescaleIntercept (HU = stored value x slope + intercept), or export the CT from the "
    "scanner/PACS in HU rather than as a normalised or 8-bit image; for a NIfTI, set "
    "scl_slope/scl_inter in its header so that the scaled values are HU (e.g. scl_inter = "
    "-1024 for stored values 0..4095), or re-export it in HU (int16, air about -1000)."
)


def replace_nonfinite(volume: Volume) -> Volume:
    """The volume with NaN, +inf and -inf voxels set to -1024 HU (air / padding).

    volume: any Volume; ``volume.hu`` is (z, y, x) in HU.
    Returns ``volume`` itself when every voxel is finite (integer arrays are not
    scanned). Otherwise a new Volume with a copied array of the same dtype and
    shape and one warning saying how many voxels (and what % of the volume) were
    non-finite. The caller's array is never modified. Raises InputError when every voxel
    is non-finite, or when >= MAX_ENCLOSED_NONFINITE_CM3 of them lie enclosed by the image
    on their slice (a damaged volume, not padding).
    """
    hu = volume.hu
    if not np.issubdtype(hu.dtype, np.floating) or hu.size == 0:
        return volume
    finite = np.isfinite(hu)
    if finite.all():
        return volume
    bad = ~finite
    n_bad = int(bad.sum())
    if n_bad == hu.size:
        raise InputError(
            f"Every voxel of the volume ({hu.size}) is NaN or infinite: there is no image to "
            "analyse. Check the export (a failed conversion often writes an all-NaN NIfTI) "
            "and export the CT again.")
    _refuse_enclosed(bad, volume)
    n_nan = int(np.isnan(hu).sum())
    n_posinf = int(np.isposinf(hu).sum())
    n_neginf = n_bad - n_nan - n_posinf
    fixed = hu.copy()
    fixed[bad] = PADDING_HU
    kinds = ", ".join(
        f"{count} {name}"
        for count, name in ((n_nan, "NaN"), (n_posinf, "+inf"), (n_neginf, "-inf"))
        if count
    )
    percent = 100.0 * n_bad / hu.size
    message = (
        f"{n_bad} of {hu.size} voxels ({percent:.3g}% of the volume) were not finite "
        f"({kinds}); they were treated as padding (air, {PADDING_HU} HU)."
    )
    logger.debug("replace_nonfinite: %s", message)
    return volume.with_hu(fixed).with_warnings(message)


def _refuse_enclosed(bad: np.ndarray, volume: Volume) -> None:
    """InputError when >= MAX_ENCLOSED_NONFINITE_CM3 of the non-finite voxels `bad` (z, y, x)
    are enclosed on their slice: in-plane regions that do not reach the slice's border.
    Padding outside a field of view, or around a resampled volume, reaches the border."""
    labels, count = ndimage.label(bad, structure=np.array(
        [[[0, 0, 0], [0, 0, 0], [0, 0, 0]], [[0, 1, 0], [1, 1, 1], [0, 1, 0]],
         [[0, 0, 0], [0, 0, 0], [0, 0, 0]]]))
    if count == 0:
        return
    edge = np.zeros(count + 1, dtype=bool)
    for border in (labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]):
        edge[np.unique(border)] = True
    enclosed = ~edge[labels] & bad
    cm3 = float(np.count_nonzero(enclosed)) * volume.voxel_volume_mm3 / 1000.0
    if cm3 >= MAX_ENCLOSED_NONFINITE_CM3:
        zs = np.flatnonzero(enclosed.any(axis=(1, 2)))
        raise InputError(
            f"{cm3:.1f} cm3 of NaN or infinite voxels lie inside the image (slices "
            f"{zs[0]}-{zs[-1]}), not as padding at its edges: the volume is damaged there, and "
            "covidct would have to guess the tissue (as air it would become lung). Export or "
            "convert the CT again from the original series.")


@dataclass(frozen=True)
class _Stats:
    n_finite: int
    minimum: float
    maximum: float
    p_air: float  # AIR_PERCENTILE-th percentile
    p1: float
    p99: float


def _sample(hu: np.ndarray) -> np.ndarray:
    """A strided (z, y, x) subsample of at most about _SAMPLE_VOXELS voxels, flattened."""
    nz, ny, nx = hu.shape
    if hu.size <= _SAMPLE_VOXELS:
        return hu.reshape(-1)
    # Stride in-plane first (every slice counts), then along z if still too many.
    step_yx = max(1, math.ceil(math.sqrt(hu.size / _SAMPLE_VOXELS)))
    per_slice = math.ceil(ny / step_yx) * math.ceil(nx / step_yx)
    step_z = max(1, math.ceil(nz * per_slice / _SAMPLE_VOXELS))
    return hu[::step_z, ::step_yx, ::step_yx].reshape(-1)


def _stats(hu: np.ndarray) -> _Stats | None:
    values = _sample(hu)
    if np.issubdtype(values.dtype, np.floating):
        values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    values = values.astype(np.float64, copy=False)
    p_air, p1, p99 = np.percentile(values, [AIR_PERCENTILE, 1.0, BRIGHT_PERCENTILE])
    # min/max from the whole array (cheap) so the message quotes the true range.
    minimum, maximum = float(hu.min()), float(hu.max())
    if not (math.isfinite(minimum) and math.isfinite(maximum)):
        finite = hu[np.isfinite(hu)]
        minimum, maximum = float(finite.min()), float(finite.max())
    return _Stats(int(values.size), minimum, maximum, float(p_air), float(p1), float(p99))


def _likely_cause(stats: _Stats) -> str:
    lo, hi = stats.minimum, stats.maximum
    if lo >= 0:
        if hi <= 1:
            return "they look normalised to 0..1"
        if hi <= 255:
            return "they look like an 8-bit image (0..255), e.g. a windowed export"
        if hi <= 4095:
            return ("they look like raw 12-bit stored pixel values (0..4095) with "
                    "RescaleSlope/RescaleIntercept not applied")
        if hi <= 65535:
            return ("they look like raw unsigned 16-bit stored pixel values with "
                    "RescaleSlope/RescaleIntercept not applied")
        return "there is no negative value at all"
    if lo >= -1 and hi <= 1:
        return "they look normalised to -1..1"
    return "no voxel reaches air"


def _range_text(stats: _Stats) -> str:
    return (f"minimum {stats.minimum:.6g}, 1st percentile {stats.p1:.6g}, "
            f"99th percentile {stats.p99:.6g}, maximum {stats.maximum:.6g}")


def hounsfield_problems(volume: Volume) -> list[str]:
    """Why ``volume.hu`` does not look like CT in Hounsfield units; [] when it does.

    volume: a Volume whose (z, y, x) ``hu`` array should hold HU. Non-finite voxels
    are ignored (see ``replace_nonfinite``). The rules and thresholds are in the
    module docstring. Each problem is one human-readable sentence that quotes the
    range found (minimum, 1st and 99th percentiles, maximum).
    """
    stats = _stats(volume.hu)
    if stats is None:
        return ["The volume holds no finite voxel value (all NaN/inf or empty), so it is "
                "not CT in Hounsfield units."]
    problems: list[str] = []
    if stats.p_air > AIR_MAX_HU:
        problems.append(
            f"The values are not Hounsfield units: they range over {_range_text(stats)}, "
            "but CT in HU has air near -1000 HU (outside the body and in the lungs) and "
            f"here the {AIR_PERCENTILE:g}th percentile is {stats.p_air:.6g} (> {AIR_MAX_HU:g}): "
            f"{_likely_cause(stats)}."
        )
    if stats.p99 > BRIGHT_MAX_HU:
        problems.append(
            f"The values are not Hounsfield units: they range over {_range_text(stats)}, "
            "but in HU bone is below about 2000 HU and here 1% of the voxels are above "
            f"{stats.p99:.6g} (> {BRIGHT_MAX_HU:g}): the values look scaled up (e.g. RescaleSlope "
            "applied twice)."
        )
    return problems


def require_hounsfield(volume: Volume) -> None:
    """Raise ``InputError`` unless ``volume.hu`` looks like CT in Hounsfield units.

    The message is one paragraph: what was found, that the values are not
    Hounsfield units, and how to fix the input.
    """
    problems = hounsfield_problems(volume)
    if not problems:
        return
    source = volume.metadata.get("source_path")
    where = f"{source}: " if source else ""
    raise InputError(
        where
        + " ".join(problems)
        + " covidct needs CT in Hounsfield units (air about -1000, water 0, bone several "
        "hundred). "
        + _FIX
        + " (A field of view entirely inside the body, with no air at all, cannot be "
        "analysed for lung disease either.)"
    )
