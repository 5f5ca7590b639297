"""Group CT images into series and choose the one to load.

Rule: the axial CT series with the most distinct slice positions; a tie is an error
unless the caller names a series. Within a series, a lone image of another
orientation (a scout stored in the series) is dropped.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from covidct.errors import SeriesSelectionError
from covidct.io.dicom_scan import CTImage, describe, orientation_key
from covidct.io.orient import plane_of_normal

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Series:
    key: str
    uid: str | None
    images: list[CTImage]

    @property
    def plane(self) -> str:
        return plane_of_normal(self.images[0].normal)

    @property
    def n_positions(self) -> int:
        normal = self.images[0].normal
        return len({round(float(img.position @ normal), 2) for img in self.images})

    def summary(self) -> dict[str, Any]:
        info = describe(self.images[0].dataset)
        return {
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


def group_series(images: list[CTImage]) -> tuple[list[Series], list[str]]:
    """Series from images (duplicates of one SOP instance dropped). Returns (series, notes)."""
    notes: list[str] = []
    seen: set[str] = set()
    by_key: dict[str, list[CTImage]] = defaultdict(list)
    duplicates = 0
    for image in images:
        ident = image.sop_uid or f"{image.series_key}|{image.position.tolist()}|{image.source}"
        if ident in seen:
            duplicates += 1
            continue
        seen.add(ident)
        by_key[image.series_key].append(image)
    if duplicates:
        notes.append(f"{duplicates} duplicate cop(ies) of the same SOP instance were ignored")
    series: list[Series] = []
    for key, members in by_key.items():
        stacks: dict[tuple, list[CTImage]] = defaultdict(list)
        for image in members:
            stacks[orientation_key(image)].append(image)
        ordered = sorted(stacks.values(), key=len, reverse=True)
        for n, stack in enumerate(ordered):
            if n > 0 and len(stack) == 1:
                notes.append(
                    f"series {key}: a lone image of another orientation or size "
                    f"({stack[0].source}) was ignored as a localizer"
                )
                continue
            sub_key = key if n == 0 else f"{key}#{n + 1}"
            series.append(Series(sub_key, stack[0].series_uid, stack))
    return series, notes


def choose_series(series: list[Series], series_uid: str | None) -> tuple[Series, list[str]]:
    """The series to load, and notes (e.g. "no axial series")."""
    listing = "; ".join(
        f"{s.key} ({s.plane}, {s.n_positions} slices, '{s.summary()['series_description'] or ''}')"
        for s in series
    )
    if series_uid is not None:
        for s in series:
            if s.key == series_uid or s.uid == series_uid:
                return s, []
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
    pool = sorted(pool, key=lambda s: s.n_positions, reverse=True)
    if len(pool) > 1 and pool[0].n_positions == pool[1].n_positions:
        tied = [s for s in pool if s.n_positions == pool[0].n_positions]
        raise SeriesSelectionError(
            f"{len(tied)} CT series have the same number of slices ({pool[0].n_positions}), so "
            "which one to analyse is ambiguous: "
            + "; ".join(f"{s.key} ('{s.summary()['series_description'] or ''}')" for s in tied)
            + ". Choose one with --series UID (series_uid=... in Python)."
        )
    return pool[0], notes


def position_along_normal(images: list[CTImage]) -> np.ndarray:
    normal = images[0].normal
    return np.array([img.position @ normal for img in images])
