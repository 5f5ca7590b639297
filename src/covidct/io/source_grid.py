"""The input file's own voxel grid, so outputs pair with it voxel for voxel.

covidct works on canonical (z, y, x) arrays (``covidct.io.orient.to_canonical``: only
axis permutations and flips). For a NIfTI, NRRD or MetaImage input the reader records
how its (i, j, k) index order maps to the canonical order; ``to_source`` undoes that
and ``write_nifti_like_source`` writes a mask or map with the input's exact shape,
array layout and affine (for a NIfTI input, the input's own header: qform/sform and
their codes, units), so a user's image array and our mask array pair index for index,
as nnU-Net and radiomics tools require.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from covidct.errors import InputError
from covidct.io.orient import canonical_axes

logger = logging.getLogger(__name__)

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def source_grid(fmt: str, shape_ijk: tuple[int, ...], affine_lps_ijk: np.ndarray) -> dict[str, Any]:
    """A JSON-ready record of a file's grid: format, (i, j, k) shape, permutation, flips.

    affine_lps_ijk: the file's voxel (i, j, k) -> LPS mm affine, as given to
    ``to_canonical`` (with the (i, j, k) array).
    """
    perm, flips = canonical_axes(affine_lps_ijk)
    return {
        "format": fmt,
        "shape_ijk": [int(n) for n in shape_ijk],
        "perm": [int(p) for p in perm],
        "flips": [bool(f) for f in flips],
        "affine_lps_ijk": np.asarray(affine_lps_ijk, dtype=np.float64).tolist(),
    }


def to_source(array_zyx: np.ndarray, grid: Mapping[str, Any]) -> np.ndarray:
    """The (i, j, k) array of the source file for a canonical (z, y, x) array.

    The exact inverse of ``to_canonical``: flips, then the inverse permutation.
    """
    out = np.asarray(array_zyx)
    for axis, flip in enumerate(grid["flips"]):
        if flip:
            out = np.flip(out, axis=axis)
    out = np.transpose(out, np.argsort(grid["perm"]))
    if list(out.shape) != list(grid["shape_ijk"]):
        raise InputError(
            f"An output of shape {array_zyx.shape} does not fit the input grid "
            f"{grid['shape_ijk']}; it was not computed on this input's voxels."
        )
    return out


def write_nifti_like_source(
    array_zyx: np.ndarray,
    grid: Mapping[str, Any],
    path: str | Path,
    dtype: np.dtype | type | str,
    source_path: str | Path | None = None,
) -> Path:
    """Write a canonical (z, y, x) array as NIfTI on the source file's own grid.

    The data are stored in the source's (i, j, k) layout with its affine (LPS -> RAS for
    NIfTI). For a NIfTI source that is still readable, its header is copied (qform, sform
    and their codes, units, dimension info); only the data type and scaling are reset.
    Integer outputs are stored exactly (rounded; values must fit ``dtype``).
    """
    import nibabel as nib

    path = Path(path)
    target = np.dtype(dtype)
    data = to_source(array_zyx, grid)
    if np.issubdtype(target, np.integer):
        values = np.rint(data) if np.issubdtype(data.dtype, np.floating) else data
        info = np.iinfo(target)
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise InputError(f"Values do not fit the NIfTI dtype {target}; use a wider dtype.")
        data = values.astype(target)
    else:
        data = data.astype(target)
    affine_ras = _LPS_TO_RAS @ np.asarray(grid["affine_lps_ijk"], dtype=np.float64)
    header = _source_header(grid, source_path)
    if header is not None:
        klass = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
        header = header.copy()
        header.set_data_shape(data.shape)
        img = klass(data, None, header=header)  # None: keep the header's qform and sform
    else:
        img = nib.Nifti1Image(data, affine_ras)
        img.set_sform(affine_ras, code=1)
        img.set_qform(affine_ras, code=1)
        img.header.set_xyzt_units("mm", "sec")
    img.header.set_data_dtype(target)
    img.header["scl_slope"] = 1.0
    img.header["scl_inter"] = 0.0
    img.header["cal_min"] = 0.0
    img.header["cal_max"] = 0.0
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    logger.debug("wrote %s on the source grid %s", path, data.shape)
    return path


def _source_header(grid: Mapping[str, Any], source_path: str | Path | None) -> Any:
    if grid.get("format") != "nifti" or not source_path:
        return None
    import nibabel as nib

    try:
        header = nib.load(str(source_path)).header
    except Exception:  # the source moved or changed: write a fresh header instead
        return None
    shape = tuple(int(n) for n in header.get_data_shape())
    want = tuple(grid["shape_ijk"])
    if shape[:3] != want or any(n != 1 for n in shape[3:]):
        return None
    return header
