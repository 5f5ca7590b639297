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
MAX_DEFLATE_RATIO = 1100
"""Deflate (gzip) cannot expand more than 1032:1; a header declaring more is corrupt."""


def read_itk_array(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read NRRD/MHA/MHD as (array (z, y, x) canonical, affine voxel -> LPS mm)."""
    hu, affine, _ = read_itk_grid(path)
    return hu, affine


def read_itk_grid(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``read_itk_array`` plus the file's (i, j, k) grid (``covidct.io.source_grid``).

    Singleton dimensions (a 4D image with one time point, a 2D image) are accepted: the
    3D volume is extracted, a 2D image is one slice.
    """
    import SimpleITK as sitk

    from covidct.io.source_grid import source_grid

    path = Path(path)
    check_header_text(path)
    try:
        _check_declared_size(path)
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines() or ["unknown error"]
        raise InputError(
            f"Cannot read {path} as NRRD/MetaImage: {lines[-1]}. "
            "Expected a readable .nrrd/.nhdr/.mha/.mhd (an .mhd needs its .raw beside it)."
        ) from exc
    image = _three_d(image, path)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{path} has {image.GetNumberOfComponentsPerPixel()} components per voxel "
            "(a vector or colour image); expected one scalar 3D CT volume."
        )
    array = sitk.GetArrayFromImage(image)  # (k, j, i)
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise InputError(f"{path} stores {array.dtype} voxels; expected real numbers (HU).")
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    cols_ijk = direction * np.asarray(image.GetSpacing(), dtype=np.float64)[np.newaxis, :]
    affine_ijk = np.eye(4)
    affine_ijk[:3, :3] = cols_ijk
    affine_ijk[:3, 3] = image.GetOrigin()
    data_ijk = array.transpose(2, 1, 0)
    grid = source_grid("nrrd" if path.suffix.lower() in (".nrrd", ".nhdr") else "metaimage",
                       data_ijk.shape, affine_ijk)
    hu, affine = to_canonical(data_ijk, affine_ijk)
    return hu, affine, grid


_HEADER_LIMIT = 1024**2
_TEXT = frozenset(range(0x20, 0x7F)) | {0x09, 0x0A, 0x0D}


def check_header_text(path: Path) -> None:
    """Refuse a NRRD/MetaImage whose text header is not well-formed before ITK parses it.

    ITK's header parsers can crash the process (a segmentation fault, found by
    benchmarks/fuzz_readers.py) on a header line that runs into binary data, so the
    header must be printable ASCII, ``key: value`` (NRRD) or ``Key = Value`` (MetaImage)
    lines, ended as the format requires (a blank line for an attached NRRD; the
    ``ElementDataFile`` line for MetaImage), within the first MiB.
    """
    with open(path, "rb") as handle:
        head = handle.read(_HEADER_LIMIT)
    suffix = path.suffix.lower()
    if suffix in (".nrrd", ".nhdr"):
        if not head.startswith(b"NRRD000"):
            raise _bad_header(path, "it does not start with the NRRD magic 'NRRD000x'")
        end = head.replace(b"\r\n", b"\n").find(b"\n\n")
        if end < 0 and suffix == ".nrrd":
            raise _bad_header(path, "no blank line ends the header")
        text = head.replace(b"\r\n", b"\n")[: end if end >= 0 else None]
        lines = text.split(b"\n")[1:]
        sep = b":"
    else:
        lines = []
        for line in head.replace(b"\r\n", b"\n").split(b"\n"):
            lines.append(line)
            if line.strip().lower().startswith(b"elementdatafile"):
                break
        else:
            raise _bad_header(path, "no ElementDataFile line ends the header")
        text = b"\n".join(lines)
        sep = b"="
    if not set(text) <= _TEXT:
        raise _bad_header(path, "the header holds binary (non-text) bytes")
    for line in lines:
        if line.strip() and not line.startswith(b"#") and sep not in line:
            form = f"key{sep.decode()} value"
            raise _bad_header(path, f"the header line {line[:60]!r} is not '{form}'")


def _bad_header(path: Path, why: str) -> InputError:
    return InputError(
        f"{path} is not a readable NRRD/MetaImage file: {why}. The file is corrupt or "
        "truncated, or another format renamed; export it again."
    )


def _check_declared_size(path: Path) -> None:
    """Refuse a header that declares more voxel bytes than the file can hold, before ITK
    allocates them (only for files that hold their own data: .nrrd, .mha)."""
    import SimpleITK as sitk

    if path.suffix.lower() not in (".nrrd", ".mha"):
        return
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    count = 1
    for n in reader.GetSize():
        count *= int(n)
    pixel = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    itemsize = 8 if "64" in pixel or "double" in pixel else (
        4 if "32" in pixel or "float" in pixel else 2 if "16" in pixel else 1)
    declared = count * itemsize * max(1, reader.GetNumberOfComponents())
    size = path.stat().st_size
    if declared > size * MAX_DEFLATE_RATIO:
        raise InputError(
            f"{path}: its header declares an image of size {list(reader.GetSize())} "
            f"({declared} bytes of voxels) but the file holds {size} bytes: the file is "
            "truncated or its header is corrupt. Copy or export it again."
        )


def _three_d(image: Any, path: Path) -> Any:
    import SimpleITK as sitk

    size = list(image.GetSize())
    if len(size) == 3:
        return image
    if len(size) == 2:
        return sitk.JoinSeries(image)
    if len(size) > 3 and sum(n > 1 for n in size) <= 3:
        # collapse singleton axes, the last ones first, until three remain (any position)
        extract = list(size)
        for axis in reversed(range(len(size))):
            if sum(n > 0 for n in extract) == 3:
                break
            if size[axis] == 1:
                extract[axis] = 0
        return sitk.Extract(image, extract, [0] * len(size))
    raise InputError(
        f"{path} is a {len(size)}D image of size {size}; expected one scalar 3D CT volume. "
        "Split the extra dimension first."
    )


def load_itk(path: str | Path) -> Volume:
    path = Path(path)
    hu, affine, grid = read_itk_grid(path)
    if hu.dtype == np.float64:
        hu = hu.astype(np.float32)
    elif hu.dtype != np.int16 and not np.issubdtype(hu.dtype, np.floating):
        info = np.iinfo(np.int16)
        fits = hu.size == 0 or (info.min <= hu.min() and hu.max() <= info.max)
        hu = hu.astype(np.int16 if fits else np.float32)
    metadata: dict[str, Any] = {"source_path": str(path), "format": grid["format"],
                                "source_grid": grid}
    return Volume(hu=hu, affine=affine, metadata=metadata)
