"""NRRD and MetaImage (.mha/.mhd) volumes through SimpleITK.

ITK geometry is already in LPS: physical = origin + direction @ (spacing * index),
index (i, j, k) with i fastest. ``GetArrayFromImage`` returns (k, j, i).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from covidct.errors import InputError
from covidct.io.orient import to_canonical
from covidct.volume import Volume

ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")


def read_itk_array(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read NRRD/MHA/MHD as (array (z, y, x) canonical, affine voxel -> LPS mm)."""
    import SimpleITK as sitk

    path = Path(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(
            f"Cannot read {path} as NRRD/MetaImage: {str(exc).strip().splitlines()[-1]}. "
            "Expected a readable .nrrd/.nhdr/.mha/.mhd (an .mhd needs its .raw beside it)."
        ) from exc
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{path} is a {image.GetDimension()}D image with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s) per voxel; "
            "expected one scalar 3D CT volume."
        )
    array = sitk.GetArrayFromImage(image)  # (k, j, i)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    cols_ijk = direction * np.asarray(image.GetSpacing(), dtype=np.float64)[np.newaxis, :]
    affine = np.eye(4)
    affine[:3, :3] = cols_ijk[:, [2, 1, 0]]
    affine[:3, 3] = image.GetOrigin()
    return to_canonical(array, affine)


def load_itk(path: str | Path) -> Volume:
    path = Path(path)
    hu, affine = read_itk_array(path)
    if hu.dtype == np.float64:
        hu = hu.astype(np.float32)
    elif hu.dtype != np.int16 and not np.issubdtype(hu.dtype, np.floating):
        info = np.iinfo(np.int16)
        fits = hu.size == 0 or (info.min <= hu.min() and hu.max() <= info.max)
        hu = hu.astype(np.int16 if fits else np.float32)
    fmt = "nrrd" if path.suffix.lower() in (".nrrd", ".nhdr") else "metaimage"
    metadata: dict[str, Any] = {"source_path": str(path), "format": fmt}
    return Volume(hu=hu, affine=affine, metadata=metadata)
