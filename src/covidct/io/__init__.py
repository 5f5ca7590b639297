"""Readers and writers at the edge of covidct: DICOM, NIfTI, NRRD, MetaImage.

``load_volume(path)`` returns a canonical axial ``Volume`` (z inferior->superior,
y anterior->posterior, x right->left) with the exact geometry of the input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from covidct.errors import InputError
from covidct.volume import Volume

__all__ = ["load_volume", "read_nifti_array", "write_nifti"]

_NIFTI = (".nii", ".nii.gz")


def load_volume(path: str | Path, series_uid: str | None = None) -> Volume:
    """Load a CT volume from a DICOM folder/file/zip, NIfTI, NRRD or MHA/MHD file.

    Non-finite voxels (NaN, +/-inf) come back as -1024 HU (padding) with a warning
    (``covidct.hu_units.replace_nonfinite``); whether the values are HU at all is
    checked later (``covidct.hu_units.hounsfield_problems``).
    """
    from covidct.hu_units import replace_nonfinite

    return replace_nonfinite(_load(Path(path), series_uid))


def _load(path: Path, series_uid: str | None) -> Volume:
    from covidct.io.formats import ITK_SUFFIXES, load_itk

    if not path.exists():
        raise InputError(
            f"{path} does not exist. Expected a DICOM folder, file or .zip, or a "
            ".nii/.nii.gz/.nrrd/.mha/.mhd file; check the path."
        )
    name = path.name.lower()
    if path.is_file() and name.endswith(_NIFTI + ITK_SUFFIXES):
        _no_series(series_uid, path)
        from covidct.io.dicom_files import file_stamp, require_unchanged
        from covidct.io.nifti import load_nifti

        before = file_stamp(path)
        volume = load_nifti(path) if name.endswith(_NIFTI) else load_itk(path)
        require_unchanged(path, before)  # a file still being copied is refused
        return volume
    from covidct.io.dicom import load_dicom

    return load_dicom(path, series_uid=series_uid)


def _no_series(series_uid: str | None, path: Path) -> None:
    if series_uid is not None:
        raise InputError(
            f"--series {series_uid} was given but {path} is a single-volume file, not DICOM; "
            "drop --series."
        )


def read_nifti_array(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """See ``covidct.io.nifti.read_nifti_array`` (imported lazily: nibabel is not needed
    to read DICOM)."""
    from covidct.io.nifti import read_nifti_array as _read

    return _read(path)


def write_nifti(
    array: np.ndarray,
    affine_lps: np.ndarray,
    path: str | Path,
    dtype: np.dtype | type | str | None = None,
) -> Path:
    """See ``covidct.io.nifti.write_nifti``."""
    from covidct.io.nifti import write_nifti as _write

    return _write(array, affine_lps, path, dtype=dtype)
