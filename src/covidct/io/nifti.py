"""NIfTI read/write. The only place where LPS <-> RAS conversion happens.

NIfTI stores the array in (i, j, k) order with an affine to RAS mm; covidct keeps
(z, y, x) arrays with affines to LPS mm. ``write_nifti`` is the one NIfTI writer of
the project, so masks and maps overlay the `covidct convert` CT exactly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from covidct.errors import InputError
from covidct.io.orient import to_canonical
from covidct.volume import Volume

logger = logging.getLogger(__name__)

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse


def _is_nifti(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def read_nifti_array(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI image as (array (z, y, x) in canonical order, affine voxel -> LPS mm).

    scl_slope/scl_inter are applied (the array is float32 then, unless they are the
    identity). Axes are permuted/flipped, never resampled, exactly as ``load_volume``
    does, so a mask read here lines up voxel for voxel with the CT. Singleton
    dimensions past the third (shape (x, y, z, 1), (x, y, z, 1, 1), ...) are dropped.
    """
    hu, affine, _ = read_nifti_grid(path)
    return hu, affine


def read_nifti_grid(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``read_nifti_array`` plus the file's grid (``covidct.io.source_grid.source_grid``)."""
    from covidct.io.source_grid import source_grid

    path = Path(path)
    try:
        img = nib.load(str(path))
        _check_declared_size(path, img)
        data = np.asanyarray(img.dataobj)
        affine_ras = np.asarray(img.affine, dtype=np.float64)
    except InputError:
        raise
    except MemoryError as exc:
        raise InputError(
            f"{path}: its header declares an image too large to hold in memory; the file is "
            "corrupt, or not a single CT volume."
        ) from exc
    except Exception as exc:  # nibabel raises several types for broken files
        raise InputError(
            f"Cannot read {path} as NIfTI ({exc}). Expected a .nii or .nii.gz file; "
            "check that the file is complete and not another format renamed."
        ) from exc
    data = squeeze_extra_dims(data, path)
    if data.ndim < 2:
        raise InputError(
            f"{path} holds a {data.ndim}D image of shape {data.shape}; expected a 3D CT volume "
            "(or one 2D slice)."
        )
    if data.ndim == 2:
        data = data[..., np.newaxis]
    if data.dtype == np.float64:
        data = data.astype(np.float32)
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
        raise InputError(
            f"{path} stores {data.dtype} voxels; expected real numbers (CT in HU, e.g. int16)."
        )
    affine_lps = _LPS_TO_RAS @ affine_ras
    grid = source_grid("nifti", data.shape, affine_lps)
    hu, affine = to_canonical(data, affine_lps)
    return hu, affine, grid


def _check_declared_size(path: Path, img: Any) -> None:
    """Refuse a header that declares more voxel bytes than the file can hold, before
    anything is allocated (a corrupt or hostile header must not exhaust memory)."""
    from covidct.io.formats import MAX_DEFLATE_RATIO

    header = img.header
    shape = header.get_data_shape()
    itemsize = np.dtype(header.get_data_dtype()).itemsize
    declared = int(np.prod([int(n) for n in shape], dtype=object)) * itemsize
    size = path.stat().st_size
    compressed = path.name.lower().endswith(".gz")
    limit = size * MAX_DEFLATE_RATIO if compressed else size
    if declared > limit:
        raise InputError(
            f"{path}: its header declares a {shape} image of {header.get_data_dtype()} "
            f"({declared} bytes of voxels) but the file holds {size} bytes"
            + (" compressed" if compressed else "")
            + ": the file is truncated or its header is corrupt. Copy or export it again."
        )


def squeeze_extra_dims(data: np.ndarray, path: Path | str) -> np.ndarray:
    """Drop singleton dimensions past the three spatial ones; refuse a real 4th/5th dim."""
    extra = data.shape[3:]
    if any(n != 1 for n in extra):
        raise InputError(
            f"{path} holds a {data.ndim}D image of shape {data.shape}; expected one 3D volume. "
            "Split the time/channel dimension first (e.g. with fslsplit)."
        )
    return data.reshape(data.shape[:3]) if extra else data


def load_nifti(path: str | Path) -> Volume:
    """A NIfTI CT as a Volume (values are taken as HU).

    ``metadata['source_grid']`` records the file's own grid, so outputs can be written
    in its array layout (``covidct.io.source_grid``).
    """
    path = Path(path)
    hu, affine, grid = read_nifti_grid(path)
    if not (np.issubdtype(hu.dtype, np.floating) or hu.dtype == np.int16):
        hu = _to_hu_dtype(hu)
    metadata: dict[str, Any] = {"source_path": str(path), "format": "nifti", "source_grid": grid}
    return Volume(hu=hu, affine=affine, metadata=metadata)


def _to_hu_dtype(array: np.ndarray) -> np.ndarray:
    lo, hi = (int(array.min()), int(array.max())) if array.size else (0, 0)
    info = np.iinfo(np.int16)
    if info.min <= lo and hi <= info.max:
        return array.astype(np.int16)
    return array.astype(np.float32)


def nifti_affine(affine_lps: np.ndarray) -> np.ndarray:
    """The NIfTI (i, j, k) -> RAS affine of a covidct (z, y, x) -> LPS affine."""
    affine_lps = np.asarray(affine_lps, dtype=np.float64)
    xyz = np.eye(4)
    xyz[:3, :3] = affine_lps[:3, [2, 1, 0]]
    xyz[:3, 3] = affine_lps[:3, 3]
    return _LPS_TO_RAS @ xyz


def write_nifti(
    array: np.ndarray,
    affine_lps: np.ndarray,
    path: str | Path,
    dtype: np.dtype | type | str | None = None,
) -> Path:
    """Write a (z, y, x) array with its voxel -> LPS affine as NIfTI (.nii or .nii.gz).

    dtype: stored type (default: the array's). Integer types are stored exactly
    (values are rounded and must fit; no scl_slope scaling is introduced). Both sform
    and qform are set (qform only when the grid is orthogonal, e.g. not gantry-tilted).
    """
    path = Path(path)
    if not _is_nifti(path):
        raise InputError(f"NIfTI output must end in .nii or .nii.gz; got {path}.")
    array = np.asarray(array)
    if array.ndim != 3:
        raise InputError(f"write_nifti needs a 3D (z, y, x) array; got shape {array.shape}.")
    target = np.dtype(dtype) if dtype is not None else array.dtype
    if target == np.bool_:
        target = np.dtype(np.uint8)
    if np.issubdtype(target, np.integer):
        info = np.iinfo(target)
        values = np.rint(array) if np.issubdtype(array.dtype, np.floating) else array
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise InputError(
                f"Values {values.min()}..{values.max()} do not fit the NIfTI dtype {target}; "
                "choose a wider dtype (e.g. float32)."
            )
        data = values.astype(target, copy=False)
    else:
        data = array.astype(target, copy=False)
    affine = nifti_affine(affine_lps)
    # (z, y, x) C-order transposed is (x, y, z) F-order, NIfTI's own layout: no copy.
    img = nib.Nifti1Image(data.transpose(2, 1, 0), affine)
    img.header.set_data_dtype(target)
    img.header.set_xyzt_units("mm", "sec")
    img.set_sform(affine, code=1)
    cols = affine[:3, :3]
    gram = cols.T @ cols
    orthogonal = np.allclose(gram - np.diag(np.diag(gram)), 0.0, atol=1e-6 * gram.max())
    img.set_qform(affine if orthogonal else None, code=1 if orthogonal else 0)
    img.header["scl_slope"] = 1.0
    img.header["scl_inter"] = 0.0
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    logger.debug("wrote %s %s %s", path, data.shape, target)
    return path
