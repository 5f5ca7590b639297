"""Reading dataset images and label maps onto one voxel grid.

Images go through `covidct.io.load_volume`; label maps through the same array readers
(canonical (z, y, x) order, voxel (k, j, i) -> LPS affine), then re-indexed onto the
image's grid by comparing affines, so a mask lines up with its CT whatever orientation
either file was stored in.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from covidct.errors import DataError, InputError
from covidct.train.masks import align_to_grid
from covidct.volume import Volume

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii.gz", ".nii")
IMAGE_SUFFIXES = (*NIFTI_SUFFIXES, ".nrrd", ".mha", ".mhd")

def strip_suffix(name: str) -> str:
    """File name without its image suffix ('a.nii.gz' -> 'a')."""
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)


def read_image(path: Path) -> Volume:
    """A CT image (NIfTI, NRRD, MHA or DICOM folder) as a Volume."""
    from covidct.io import load_volume

    try:
        return load_volume(path)
    except InputError as exc:
        raise DataError(f"Cannot read image {path}: {exc}") from exc


def read_label_map(path: Path, like: Volume, *, name: str = "mask") -> np.ndarray:
    """A label map re-indexed onto `like`'s voxel grid (integer labels kept)."""
    array, affine = read_array(path)
    array = np.rint(array).astype(np.int16) if array.dtype.kind == "f" else array
    return align_to_grid(array, affine, like.affine, like.shape, name=f"{name} {path.name}")


def read_array(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(array (z, y, x), affine voxel (k, j, i) -> LPS mm) on the canonical axial grid."""
    from covidct.io import read_nifti_array
    from covidct.io.formats import read_itk_array

    if not path.is_file():
        raise DataError(f"File not found: {path}.")
    try:
        if path.name.lower().endswith(NIFTI_SUFFIXES):
            return read_nifti_array(path)
        return read_itk_array(path)
    except InputError as exc:
        raise DataError(f"Cannot read {path}: {exc}") from exc
