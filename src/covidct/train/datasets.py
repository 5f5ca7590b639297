"""Training and evaluation datasets: find cases, load them, split them by case.

`discover_cases(root, layout)` lists a dataset's cases (see `covidct.train.layouts` for the
layouts accepted); `load_case(record)` reads one onto covidct's conventions: a Volume,
lung mask (1 right, 2 left), infection mask (0/1), a bool label per slice and the case label.
Slice labels come from the infection mask where there is one (infection >= 0.5 % of the
slice's lung area and >= 20 pixels; without a lung mask, >= 20 pixels), otherwise from
synth's truth.json or the csv layout's slice ranges.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from covidct.errors import DataError
from covidct.train.layouts import FINDERS, LAYOUTS, CaseRecord, detect_layout
from covidct.train.masks import infection_from_labels, lung_to_right_left, slice_labels_from_masks
from covidct.train.volumes import read_image, read_label_map
from covidct.volume import Volume

logger = logging.getLogger(__name__)

__all__ = ["LAYOUTS", "CaseRecord", "LoadedCase", "discover_cases", "load_case", "split_cases"]


@dataclass(frozen=True)
class LoadedCase:
    """One case on covidct's conventions (arrays (z, y, x) on the volume's grid)."""

    case_id: str
    volume: Volume
    lung: np.ndarray | None  # uint8: 1 right, 2 left
    infection: np.ndarray | None  # uint8 0/1
    slice_labels: np.ndarray | None  # bool per slice
    label: str | None  # 'covid' | 'negative' | None


def discover_cases(root: Path, layout: str = "auto") -> list[CaseRecord]:
    """The cases of the dataset at `root`, sorted by case id."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Dataset folder not found: {root}.")
    if layout == "auto":
        detected = detect_layout(root)
        if detected is None:
            raise DataError(
                f"Cannot tell the layout of {root}. Known layouts: {', '.join(LAYOUTS)} "
                "(see `covidct.train.layouts`); pass --layout to choose one.")
        layout = detected
        logger.info("%s: detected layout %s", root, layout)
    if layout not in FINDERS:
        raise DataError(f"Unknown layout {layout!r}; known layouts: {', '.join(LAYOUTS)}.")
    records = FINDERS[layout](root)
    if not records:
        raise DataError(f"No cases found in {root} for layout {layout!r}.")
    ids = [r.case_id for r in records]
    if len(set(ids)) != len(ids):
        raise DataError(f"Duplicate case ids in {root}: "
                        f"{sorted({i for i in ids if ids.count(i) > 1})}.")
    return sorted(records, key=lambda r: r.case_id)


def load_case(record: CaseRecord) -> LoadedCase:
    """Read one case's image, masks and labels."""
    volume = read_image(record.image)
    if _looks_8bit(volume.hu):
        volume = volume.with_warnings(
            f"{record.image.name}: intensities lie in [0, 255], not HU (some Radiopaedia "
            "cases of COVID-19-CT-Seg are stored so); HU-based steps will be wrong.")
        logger.warning("%s: intensities look 8-bit, not HU", record.image)
    lung = infection = None
    if record.lung is not None:
        lung = _load_lung(record, volume)
    if record.infection is not None:
        raw = read_label_map(record.infection, volume, name="infection mask")
        infection = infection_from_labels(raw, record.infection_labels)
    slice_labels = _slice_labels(record, volume, lung, infection)
    label = record.label
    if label is None and record.derive_label and slice_labels is not None:
        label = "covid" if slice_labels.any() else "negative"
    return LoadedCase(case_id=record.case_id, volume=volume, lung=lung, infection=infection,
                      slice_labels=slice_labels, label=label)


def _load_lung(record: CaseRecord, volume: Volume) -> np.ndarray:
    raw = read_label_map(record.lung, volume, name="lung mask")
    if record.lung_fill_labels:
        raw = _fill_from_nearest(raw, record.lung_fill_labels)
    return lung_to_right_left(raw, record.lung_convention, per_slice=record.per_slice)


def _fill_from_nearest(labels: np.ndarray, fill: tuple[int, ...]) -> np.ndarray:
    """Give voxels of `fill` labels (infection inside a lung map) their nearest lung label."""
    holes = np.isin(labels, fill)
    lung = (labels > 0) & ~holes
    if not holes.any() or not lung.any():
        return np.where(holes, 1, labels)
    _, nearest = ndimage.distance_transform_edt(~lung, return_indices=True)
    filled = labels[tuple(nearest)]
    return np.where(holes, filled, labels)


def _slice_labels(record: CaseRecord, volume: Volume, lung: np.ndarray | None,
                  infection: np.ndarray | None) -> np.ndarray | None:
    depth = volume.shape[0]
    if infection is not None:
        return slice_labels_from_masks(infection, lung)
    if record.truth is not None:
        labels = json.loads(record.truth.read_text()).get("slice_labels")
        if labels is not None and len(labels) == depth:
            return np.asarray(labels, dtype=bool)
    if record.slice_ranges is not None:
        labels = np.zeros(depth, dtype=bool)
        for first, last in record.slice_ranges:
            if last >= depth:
                raise DataError(f"Case {record.case_id}: slice range {first}..{last} is past "
                                f"the volume's {depth} slices (0-based, inclusive).")
            labels[first : last + 1] = True
        return labels
    return None


def _looks_8bit(hu: np.ndarray) -> bool:
    return bool(hu.size) and float(hu.min()) >= 0.0 and float(hu.max()) <= 255.0


def split_cases(records: Sequence[CaseRecord], fractions: Sequence[float],
                seed: int = 0) -> list[list[CaseRecord]]:
    """Split by case (never by slice), stratified by label, deterministic for a seed.

    fractions: e.g. (0.7, 0.15, 0.15); normalised to sum 1. Each part is sorted by case id.
    """
    weights = np.asarray(fractions, dtype=np.float64)
    if weights.ndim != 1 or weights.size == 0 or np.any(weights < 0) or weights.sum() <= 0:
        raise DataError(f"Split fractions must be non-negative with a positive sum; "
                        f"got {list(fractions)}.")
    bounds = np.cumsum(weights / weights.sum())
    parts: list[list[CaseRecord]] = [[] for _ in weights]
    rng = np.random.default_rng(seed)
    strata: dict[str, list[CaseRecord]] = {}
    for record in sorted(records, key=lambda r: r.case_id):
        strata.setdefault(str(record.label), []).append(record)
    for key in sorted(strata):
        group = strata[key]
        order = rng.permutation(len(group))
        cuts = np.rint(bounds * len(group)).astype(int)
        start = 0
        for part, stop in zip(parts, cuts, strict=True):
            part.extend(group[i] for i in order[start:stop])
            start = stop
    return [sorted(p, key=lambda r: r.case_id) for p in parts]
