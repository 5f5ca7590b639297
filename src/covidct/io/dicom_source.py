"""The source DICOM images behind a loaded Volume, slice by slice.

``load_dicom`` reorders the chosen series to the canonical axial grid (covidct.io.orient)
and keeps no DICOM headers. Objects derived from the analysis (SEG, SR, secondary
captures) must reference the source images and put each mask frame on the source image
it belongs to. ``source_stack`` rebuilds the loader's stack from the series' datasets with
the loader's own functions (same grouping, same series choice, same sort and duplicate
removal), and ``SourceStack.to_source`` maps a canonical (z, y, x) array back to the
source order (k, row, column): frame k is the pixels of ``datasets[k]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from covidct.errors import InputError
from covidct.io.dicom_files import read_dicom_tree
from covidct.io.dicom_geometry import stack_geometry
from covidct.io.dicom_scan import ct_images, describe
from covidct.io.dicom_series import choose_series, group_series
from covidct.io.orient import canonical_axes
from covidct.volume import Volume

_AFFINE_TOL_MM = 1e-3


@dataclass(frozen=True)
class SourceStack:
    """The source images of one series, sorted as the loader stacked them.

    datasets: one single-frame CT image per source slice, in stack order k.
    affine: 4x4, source voxel (k, row, column) -> LPS mm.
    perm, flips: canonical axis t is source axis perm[t], flipped when flips[t].
    """

    datasets: tuple[Dataset, ...]
    affine: np.ndarray
    perm: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    series_uid: str
    # A non-uniform series is loaded on a uniform grid of nearest true slices
    # (covidct.io.dicom_geometry): grid_slices[k] is the grid slice (stack order) that
    # shows datasets[k] nearest its true position, grid_source[g] the dataset grid slice g
    # shows. None: the stack is the datasets themselves.
    grid_slices: tuple[int, ...] | None = None
    grid_source: tuple[int, ...] | None = None
    slice_index: tuple[int, ...] | None = None  # the loader's source_slice_index (stack order)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(k, rows, columns) of the loader's stack (grid slices for a non-uniform series)."""
        first = self.datasets[0]
        count = len(self.grid_source) if self.grid_source is not None else len(self.datasets)
        return (count, int(first.Rows), int(first.Columns))

    def canonical_shape(self) -> tuple[int, int, int]:
        return tuple(self.shape[p] for p in self.perm)  # type: ignore[return-value]

    def canonical_affine(self) -> np.ndarray:
        """The affine the loader gives the canonical volume (as covidct.io.orient)."""
        new = np.eye(4)
        new[:3, :3] = self.affine[:3, list(self.perm)]
        new[:3, 3] = self.affine[:3, 3]
        shape = self.canonical_shape()
        for t, flip in enumerate(self.flips):
            if flip:
                new[:3, 3] += (shape[t] - 1) * new[:3, t]
                new[:3, t] = -new[:3, t]
        return new

    def to_source(self, canonical: np.ndarray) -> np.ndarray:
        """A canonical (z, y, x) array in source order (k, row, column): one slice per
        dataset (for a non-uniform series, the grid slice that shows it)."""
        if tuple(canonical.shape[:3]) != self.canonical_shape():
            raise InputError(
                f"An array of shape {canonical.shape} cannot be mapped onto the source series "
                f"(canonical shape {self.canonical_shape()}).")
        out = canonical
        for t, flip in enumerate(self.flips):
            if flip:
                out = np.flip(out, axis=t)
        out = np.transpose(out, np.argsort(self.perm))
        if self.grid_slices is not None:
            out = out[list(self.grid_slices)]
        return np.ascontiguousarray(out)

    def source_index(self, z: int) -> int | None:
        """The source image index k of canonical slice z, or None when the source series is
        not axial (canonical slices are then not source images)."""
        if self.perm[0] != 0:
            return None
        g = self.shape[0] - 1 - z if self.flips[0] else z
        return self.grid_source[g] if self.grid_source is not None else g

    def require_matches(self, volume: Volume) -> None:
        """InputError unless ``volume`` is exactly this series as the loader reads it."""
        shape = self.canonical_shape()
        same_slices = True
        if self.perm[0] == 0:  # a grid of nearest true slices must show the same slices
            mine = None if self.slice_index is None else list(
                self.slice_index[::-1] if self.flips[0] else self.slice_index)
            theirs = volume.metadata.get("source_slice_index")
            same_slices = mine == (None if theirs is None else [int(n) for n in theirs])
        if not same_slices or tuple(volume.shape) != shape or not np.allclose(
                volume.affine, self.canonical_affine(), atol=_AFFINE_TOL_MM):
            raise InputError(
                f"The source DICOM images (series {self.series_uid}, {self.shape[0]} slices) do "
                f"not match the analysed volume (shape {volume.shape}, canonical shape of the "
                f"series {shape}); DICOM outputs must be written from the series that was "
                "analysed. Pass the same files (and the same --series).")


def source_stack(datasets: Sequence[Dataset], series_uid: str | None = None) -> SourceStack:
    """The loader's stack of the series ``series_uid`` (a SeriesInstanceUID, or the key in
    Volume.metadata['series_uid']) among ``datasets``; the loader's choice when None.

    Raises InputError when no CT series is found, when the series has no
    SeriesInstanceUID, or when it is an Enhanced (multi-frame) CT object (not supported
    for DICOM outputs yet).
    """
    images = []
    for n, ds in enumerate(datasets):
        found, _ = ct_images(f"dataset {n}", ds)
        images.extend(found)
    if not images:
        raise InputError("No CT images among the source datasets; DICOM outputs reference the "
                         "CT series that was analysed. Pass that series' files.")
    series, _ = group_series(images)
    if not series:
        raise InputError("The source datasets hold only localizer images; pass the CT series.")
    chosen, _ = choose_series(series, series_uid)
    if chosen.uid is None:
        raise InputError(
            f"The source series {chosen.key} has no SeriesInstanceUID, which DICOM outputs must "
            "reference. Export the series again from the PACS (with its UIDs).")
    first = chosen.images[0].dataset
    lacking = [k for k in ("StudyInstanceUID", "FrameOfReferenceUID") if not first.get(k)]
    if lacking:
        raise InputError(
            f"The source series {chosen.key} has no {' or '.join(lacking)} (an anonymiser "
            "removed it?); DICOM SEG/SR outputs must share the study and frame of reference of "
            "the images they describe. Export the series with its UIDs, or use --no-dicom-out.")
    if any(img.frame is not None for img in chosen.images):
        raise InputError(
            "The source is an Enhanced (multi-frame) CT object; DICOM SEG/SR/SC outputs are "
            "written for single-frame CT Image Storage series only. Use --no-dicom-out, or "
            "convert the series to single-frame images.")
    thickness = describe(chosen.images[0].dataset)["slice_thickness_mm"]
    geometry = stack_geometry(chosen.images, thickness)
    perm, flips = canonical_axes(geometry.affine)
    affine = np.asarray(geometry.affine, dtype=np.float64)
    if geometry.source_slice_index is None:
        return SourceStack(datasets=tuple(img.dataset for img in geometry.images),
                           affine=affine, perm=perm, flips=flips, series_uid=chosen.uid)
    # a uniform grid of nearest true slices: one dataset per true slice shown, each with the
    # grid slice nearest its true position
    index = list(geometry.source_slice_index)
    normal = geometry.images[0].normal
    grid_depth = (affine[:3, 3] + np.outer(np.arange(len(index)), affine[:3, 0])) @ normal
    shown = sorted(set(index))
    grid_slices, datasets = [], []
    for n in shown:
        candidates = [g for g, m in enumerate(index) if m == n]
        image = geometry.images[candidates[0]]
        depth = float(image.position @ normal)
        grid_slices.append(min(candidates, key=lambda g: abs(grid_depth[g] - depth)))
        datasets.append(image.dataset)
    rank = {n: k for k, n in enumerate(shown)}
    return SourceStack(datasets=tuple(datasets), affine=affine, perm=perm, flips=flips,
                       series_uid=chosen.uid, grid_slices=tuple(grid_slices),
                       grid_source=tuple(rank[m] for m in index), slice_index=tuple(index))


def read_source_datasets(path: str | Path) -> list[Dataset]:
    """Every DICOM dataset under ``path`` (folder, file or .zip), headers parsed and pixel
    data deferred (read from disk only if accessed). The files are not modified."""
    return [ds for _, ds in read_dicom_tree(path).datasets]
