"""Find and parse DICOM files in a folder tree, a single file or a .zip archive.

Headers are parsed once; large elements (pixel data) are deferred for files on disk,
so they are read from disk only for the series that is finally loaded. The input is
never modified.
"""

from __future__ import annotations

import io
import logging
import os
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from covidct.errors import InputError

logger = logging.getLogger(__name__)

_DEFER_SIZE = "64 KB"  # elements larger than this (pixel data) are read on access


@dataclass
class ReadReport:
    """What was found while reading: parsed datasets and why other files were skipped."""

    datasets: list[tuple[str, Dataset]] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    n_files: int = 0

    def skip(self, reason: str, name: str) -> None:
        self.skipped.setdefault(reason, []).append(name)

    def skipped_summary(self) -> str:
        if not self.skipped:
            return "nothing was skipped"
        parts = [f"{len(names)} {reason} (e.g. {names[0]})"
                 for reason, names in self.skipped.items()]
        return "; ".join(parts)


def is_zip(path: Path) -> bool:
    if path.suffix.lower() == ".zip":
        return True
    if not zipfile.is_zipfile(path):
        return False
    with open(path, "rb") as handle:  # a DICOM file with a preamble is never a zip
        return handle.read(132)[128:132] != b"DICM"


def _iter_folder(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def _parse(name: str, source: str | io.BytesIO) -> tuple[str, Dataset | None, str | None]:
    """Parse one file; returns (name, dataset or None, skip reason or None)."""
    try:
        ds = pydicom.dcmread(source, defer_size=_DEFER_SIZE if isinstance(source, str) else None)
    except InvalidDicomError:
        return name, None, "non-DICOM file(s)"
    except Exception as exc:  # truncated or corrupt headers raise many types
        logger.debug("cannot parse %s: %s", name, exc)
        return name, None, "unreadable or truncated DICOM file(s)"
    return name, ds, None


def read_dicom_tree(path: str | Path, max_workers: int | None = None) -> ReadReport:
    """Parse every file under ``path`` (folder, file or zip) as DICOM."""
    path = Path(path)
    if not path.exists():
        raise InputError(
            f"{path} does not exist. Give a DICOM folder, file or .zip, or a NIfTI/NRRD/MHA file."
        )
    report = ReadReport()
    workers = max_workers or min(4, os.cpu_count() or 1)
    if path.is_dir():
        files = [str(p) for p in _iter_folder(path)]
        report.n_files = len(files)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(lambda f: _parse(f, f), files))
    elif is_zip(path):
        results = []
        try:
            with zipfile.ZipFile(path) as archive:
                members = sorted(
                    (m for m in archive.infolist() if not m.is_dir()), key=lambda m: m.filename
                )
                members = [m for m in members if not Path(m.filename).name.startswith(".")]
                report.n_files = len(members)
                for member in members:
                    data = archive.read(member)
                    label = f"{path}!{member.filename}"
                    results.append(_parse(label, io.BytesIO(data)))
        except (zipfile.BadZipFile, OSError) as exc:
            raise InputError(
                f"{path} looks like a .zip archive but cannot be read ({exc}). "
                "Expected a complete zip of DICOM files; re-download or unzip it yourself."
            ) from exc
    else:
        report.n_files = 1
        results = [_parse(str(path), str(path))]
    for name, ds, reason in results:
        if ds is None:
            report.skip(reason or "unreadable file(s)", name)
        else:
            report.datasets.append((name, ds))
    return report
