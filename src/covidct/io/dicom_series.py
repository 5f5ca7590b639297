"""Group CT images into series and choose the one to load.

Rule: the axial CT series with the most distinct slice positions; a tie is an error
unless the caller names a series. Within a series, a lone image of another
orientation (a scout stored in the series) is dropped.

Images are grouped by geometry with tolerances (``dicom_scan.same_grid``), never by
rounded values. Several acquisitions or phases in one series (AcquisitionNumber /
TemporalPositionIdentifier) whose slice positions overlap (interleaved, or the same
positions twice, e.g. a plain and a contrast phase) are split into sub-series
``UID#acqN``; the lowest-numbered one is chosen, with a warning naming the others.
Duplicates are judged by position and pixel data, not by SOPInstanceUID alone, as
dcm2niix does: some anonymizers give every slice of a series the same UID.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from covidct.errors import SeriesSelectionError
from covidct.io.dicom_scan import CTImage, describe, same_grid
from covidct.io.orient import plane_of_normal

logger = logging.getLogger(__name__)

POSITION_TOL_MM = 0.01
"""Slice positions closer than this along the normal are the same position."""


@dataclass(eq=False)
class Series:
    key: str
    uid: str | None
    images: list[CTImage]
    phase: tuple[int | None, int | None] | None = None  # set when split from a series

    @property
    def plane(self) -> str:
        return plane_of_normal(self.images[0].normal)

    @property
    def n_positions(self) -> int:
        return count_positions(position_along_normal(self.images))

    def summary(self) -> dict[str, Any]:
        info = describe(self.images[0].dataset)
        entry = {
            "series_uid": self.key,
            "series_number": info["series_number"],
            "series_description": info["series_description"],
            "modality": info["modality"],
            "orientation": self.plane,
            "n_images": len(self.images),
            "n_positions": self.n_positions,
            "rows": self.images[0].shape[0],
            "columns": self.images[0].shape[1],
        }
        if self.phase is not None:
            entry["acquisition_number"], entry["temporal_position"] = self.phase
        return entry


def count_positions(depth: np.ndarray, tol: float = POSITION_TOL_MM) -> int:
    """Distinct values of ``depth`` (mm), values closer than ``tol`` counting once."""
    if depth.size == 0:
        return 0
    ordered = np.sort(depth)
    return int(1 + np.count_nonzero(np.diff(ordered) > tol))


def _pixel_digest(image: CTImage) -> str:
    try:
        data = image.dataset.PixelData
    except Exception:  # unreadable pixel data: never equal to anything
        return f"unreadable:{id(image)}"
    return hashlib.sha1(data).hexdigest() + f"#{image.frame}"


def drop_duplicates(images: list[CTImage]) -> tuple[list[CTImage], list[str]]:
    """Images without identical copies (same UID, series, position and pixel data)."""
    by_uid: dict[str, list[CTImage]] = defaultdict(list)
    kept: list[CTImage] = []
    duplicates = shared = 0
    for image in images:
        if not image.sop_uid:
            kept.append(image)
            continue
        same_uid = by_uid[image.sop_uid]
        copy = any(
            other.series_key == image.series_key
            and float(np.abs(other.position - image.position).max()) <= POSITION_TOL_MM
            and same_grid(other, image)
            and _pixel_digest(other) == _pixel_digest(image)
            for other in same_uid
        )
        if copy:
            duplicates += 1
            continue
        if same_uid:
            shared += 1
        same_uid.append(image)
        kept.append(image)
    notes = []
    if duplicates:
        notes.append(f"{duplicates} duplicate cop(ies) of an image (same SOPInstanceUID, "
                     "position and pixel data) were ignored")
    if shared:
        notes.append(
            f"{shared} image(s) carry the SOPInstanceUID of another image but differ from it in "
            "position or pixel data (an anonymizer that reuses UIDs); they were all kept, as "
            "duplicates are judged by position and pixel data"
        )
    return kept, notes


def _split_phases(key: str, stack: list[CTImage]) -> tuple[list[Series], list[str]]:
    groups: dict[tuple, list[CTImage]] = defaultdict(list)
    for image in stack:
        groups[image.phase].append(image)
    uid = stack[0].series_uid
    if len(groups) < 2 or sum(len(g) > 1 for g in groups.values()) < 2:
        return [Series(key, uid, stack)], []
    ranges = []
    for members in groups.values():
        depth = position_along_normal(members)
        ranges.append((float(depth.min()), float(depth.max())))
    overlap = any(
        max(a[0], b[0]) < min(a[1], b[1]) - POSITION_TOL_MM
        for n, a in enumerate(ranges) for b in ranges[n + 1:]
    )
    if not overlap:  # e.g. step-and-shoot: one acquisition number per table position
        return [Series(key, uid, stack)], []
    order = sorted(groups, key=lambda p: tuple(-1 if v is None else v for v in p))
    out = [Series(f"{key}#acq{n + 1}", uid, groups[p], phase=p) for n, p in enumerate(order)]
    names = ", ".join(
        f"AcquisitionNumber {s.phase[0]}"
        + (f" TemporalPositionIdentifier {s.phase[1]}" if s.phase[1] is not None else "")
        + f": {len(s.images)} images" for s in out
    )
    note = (
        f"series {key} holds {len(out)} acquisitions or phases at overlapping slice positions "
        f"({names}; e.g. a plain and a contrast phase); they were split into "
        + ", ".join(f"#acq{n + 1}" for n in range(len(out)))
        + " and are never stacked together"
    )
    return out, [note]


def group_series(images: list[CTImage]) -> tuple[list[Series], list[str]]:
    """Series from images (identical copies dropped). Returns (series, notes)."""
    images, notes = drop_duplicates(images)
    by_key: dict[str, list[CTImage]] = defaultdict(list)
    for image in images:
        by_key[image.series_key].append(image)
    series: list[Series] = []
    for key, members in by_key.items():
        stacks: list[list[CTImage]] = []
        for image in members:
            home = next((s for s in stacks if same_grid(s[0], image)), None)
            if home is None:
                stacks.append([image])
            else:
                home.append(image)
        ordered = sorted(stacks, key=len, reverse=True)
        for n, stack in enumerate(ordered):
            if n > 0 and len(stack) == 1:
                notes.append(
                    f"series {key}: a lone image of another orientation or size "
                    f"({stack[0].source}) was ignored as a localizer"
                )
                continue
            sub_key = key if n == 0 else f"{key}#{n + 1}"
            split, split_notes = _split_phases(sub_key, stack)
            series.extend(split)
            notes.extend(split_notes)
    return series, notes


def _rank(s: Series) -> tuple:
    phase = s.phase or (None, None)
    return (-s.n_positions, tuple(-1 if v is None else v for v in phase))


def _pick(pool: list[Series]) -> tuple[Series, list[str]]:
    """The series with most positions; a tie among phases of one series goes to the first."""
    pool = sorted(pool, key=_rank)
    best = pool[0]
    tied = [s for s in pool if s.n_positions == best.n_positions]
    if len(tied) == 1:
        return best, []
    if all(s.phase is not None and s.uid == best.uid for s in tied) and best.uid is not None:
        others = [s.key for s in pool[1:] if s.uid == best.uid]
        return best, [
            f"chose {best.key}, the first acquisition; pass --series {others[0]} to analyse "
            + ("the other" if len(others) == 1 else f"another ({', '.join(others)})")
        ]
    raise SeriesSelectionError(
        f"{len(tied)} CT series have the same number of slices ({best.n_positions}), so "
        "which one to analyse is ambiguous: "
        + "; ".join(f"{s.key} ('{s.summary()['series_description'] or ''}')" for s in tied)
        + ". Choose one with --series UID (series_uid=... in Python)."
    )


def choose_series(series: list[Series], series_uid: str | None) -> tuple[Series, list[str]]:
    """The series to load, and notes (e.g. "no axial series")."""
    listing = "; ".join(
        f"{s.key} ({s.plane}, {s.n_positions} slices, '{s.summary()['series_description'] or ''}')"
        for s in series
    )
    if series_uid is not None:
        exact = [s for s in series if s.key == series_uid]
        if exact:
            return exact[0], []
        named = [s for s in series if s.uid == series_uid]
        if named:
            return _pick(named)
        raise SeriesSelectionError(
            f"Series {series_uid!r} was asked for but is not among the CT series found: "
            f"{listing}. Pass one of these UIDs to --series (see `covidct info PATH`)."
        )
    axial = [s for s in series if s.plane == "axial"]
    notes: list[str] = []
    pool = axial
    if not axial:
        pool = series
        notes.append(
            "no axial CT series was found; the largest "
            f"{max(series, key=lambda s: s.n_positions).plane} series was reoriented to axial order"
        )
    chosen, pick_notes = _pick(pool)
    return chosen, notes + pick_notes


def position_along_normal(images: list[CTImage]) -> np.ndarray:
    normal = images[0].normal
    return np.array([img.position @ normal for img in images])
