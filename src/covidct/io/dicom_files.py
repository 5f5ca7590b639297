"""Find and parse DICOM files in a folder tree, a single file or a .zip archive.

Headers are parsed once; large elements (pixel data) are deferred for files on disk,
so they are read from disk only for the series that is finally loaded. The input is
never modified and nothing is written: zip members are read into memory.

Part-10 non-conformance that pydicom can still read (no 128-byte preamble, no "DICM",
no file meta information, no TransferSyntaxUID) is read with ``force=True`` and the
transfer syntax taken from the encoding pydicom found (PS3.10 section 7.1; dcm2niix
reads such files too); ``ReadReport.forced`` lists them for one warning.

Inputs are bounded: a zip member with ``..`` or an absolute path, a zip that expands
past ``max_expanded_bytes`` (a zip bomb), a symlink loop in a folder, and a file that
changes while it is read (``check_unchanged``) are each an ``InputError``.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import stat
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from covidct.errors import InputError

logger = logging.getLogger(__name__)

_DEFER_SIZE = "64 KB"  # elements larger than this (pixel data) are read on access
MAX_EXPANDED_BYTES = 8 * 1024**3
"""Default limit on the total uncompressed size of a .zip input (8 GiB)."""
MAX_COMPRESSION_RATIO = 200
"""A zip member over 32 MiB that expands more than this many times is refused (a bomb);
DICOM CT compresses 2-10x, zero-padded images rarely 50x."""
_RATIO_MIN_BYTES = 32 * 1024**2
_CHUNK = 1024**2

# Group numbers a bare (preamble-less) DICOM data set starts with: file meta (0002) or
# identifying (0008) elements, little or big endian.
_BARE_STARTS = {b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08"}


@dataclass
class ReadReport:
    """What was found while reading: parsed datasets and why other files were skipped."""

    datasets: list[tuple[str, Dataset]] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    n_files: int = 0
    forced: list[str] = field(default_factory=list)  # read with force=True (not Part-10)
    stats: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (size, mtime_ns)

    def skip(self, reason: str, name: str) -> None:
        self.skipped.setdefault(reason, []).append(name)

    def skipped_summary(self) -> str:
        if not self.skipped:
            return "nothing was skipped"
        parts = [f"{len(names)} {reason} (e.g. {names[0]})"
                 for reason, names in self.skipped.items()]
        return "; ".join(parts)

    def check_unchanged(self, names: list[str] | None = None) -> None:
        """Raise ``InputError`` if a file read from disk changed size or time since parsing."""
        for name in names if names is not None else list(self.stats):
            before = self.stats.get(name)
            if before is not None:
                require_unchanged(Path(name), before)


def file_stamp(path: Path) -> tuple[int, int]:
    """(size in bytes, modification time in ns) of ``path``."""
    info = path.stat()
    return info.st_size, info.st_mtime_ns


def require_unchanged(path: Path, before: tuple[int, int]) -> None:
    """Raise ``InputError`` when ``path`` no longer has the (size, mtime) ``before``."""
    try:
        now = file_stamp(path)
    except OSError as exc:
        raise InputError(f"{path} disappeared while it was being read ({exc}).") from exc
    if now != before:
        raise InputError(
            f"{path} changed while it was being read (size {before[0]} -> {now[0]} bytes): it "
            "is probably still being copied or written. Wait until the copy or download has "
            "finished, then run covidct again."
        )


def is_zip(path: Path) -> bool:
    if path.suffix.lower() == ".zip":
        return True
    if not zipfile.is_zipfile(path):
        return False
    with open(path, "rb") as handle:  # a DICOM file with a preamble is never a zip
        return handle.read(132)[128:132] != b"DICM"


def _iter_folder(root: Path) -> Iterator[Path]:
    """Files under ``root`` in sorted order; directory links are followed, loops refused."""
    seen = {os.path.realpath(root)}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        here = os.path.realpath(dirpath)
        for name in list(dirnames):
            link = Path(dirpath) / name
            real = os.path.realpath(link)
            if real == here or here.startswith(real + os.sep):
                raise InputError(
                    f"{link} is a symbolic link that leads back into the folder being read "
                    f"(to {real}), a loop. Remove the link, or give covidct the series folder "
                    "itself."
                )
            if real in seen:  # a second way into a folder already read
                dirnames.remove(name)
                continue
            seen.add(real)
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            if path.is_symlink():
                try:
                    path.resolve(strict=True)
                except RuntimeError as exc:  # Python < 3.13: symlink loop
                    raise _loop_error(path) from exc
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        raise _loop_error(path) from exc
                    continue  # a dangling link: nothing to read
            yield path


def _loop_error(path: Path) -> InputError:
    return InputError(
        f"{path} is a symbolic link loop (it points, through other links, back to itself). "
        "Remove the link or replace it with the file it should point to."
    )


def _bare_dataset_start(head: bytes) -> bool:
    return len(head) >= 8 and head[:2] in _BARE_STARTS


def _fill_transfer_syntax(ds: Dataset) -> None:
    """Give a dataset read without file meta the transfer syntax it was encoded with."""
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = FileMetaDataset()
        ds.file_meta = meta
    if meta.get("TransferSyntaxUID"):
        return
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit is None:
        implicit, little = True, True
    meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                              ExplicitVRLittleEndian if little else ExplicitVRBigEndian)


def _plausible(ds: Dataset) -> bool:
    """A force-read dataset counts as DICOM only with the elements of an image object."""
    return "SOPClassUID" in ds or ("Rows" in ds and "PixelData" in ds)


def _parse(
    name: str, source: str | io.BytesIO
) -> tuple[str, Dataset | None, str | None, bool]:
    """Parse one file; returns (name, dataset or None, skip reason or None, forced)."""
    defer = _DEFER_SIZE if isinstance(source, str) else None
    forced = False
    try:
        ds = pydicom.dcmread(source, defer_size=defer)
    except InvalidDicomError:
        if isinstance(source, str):
            with open(source, "rb") as handle:
                head = handle.read(8)
        else:
            source.seek(0)
            head = source.read(8)
            source.seek(0)
        if head[:4] == b"DICM":  # "DICM" and file meta, but no 128-byte preamble
            data = Path(source).read_bytes() if isinstance(source, str) else source.getvalue()
            source, defer = io.BytesIO(bytes(128) + data), None
        elif not _bare_dataset_start(head):
            return name, None, "non-DICOM file(s)", False
        try:
            ds = pydicom.dcmread(source, defer_size=defer, force=True)
        except Exception as exc:  # a forced read of a non-DICOM file raises many types
            logger.debug("cannot force-parse %s: %s", name, exc)
            return name, None, "non-DICOM file(s)", False
        if not _plausible(ds):
            return name, None, "non-DICOM file(s)", False
        forced = True
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _loop_error(Path(name)) from exc
        logger.debug("cannot read %s: %s", name, exc)
        return name, None, "unreadable or truncated DICOM file(s)", False
    except Exception as exc:  # truncated or corrupt headers raise many types
        logger.debug("cannot parse %s: %s", name, exc)
        return name, None, "unreadable or truncated DICOM file(s)", False
    try:
        meta = getattr(ds, "file_meta", None)
        if meta is None or not meta.get("TransferSyntaxUID"):
            forced = True
            _fill_transfer_syntax(ds)
        materialize(ds)
        materialize(ds.file_meta)
    except Exception as exc:  # a corrupt element (unknown VR, bad length, ...)
        logger.debug("cannot read the file meta of %s: %s", name, exc)
        return name, None, "unreadable or truncated DICOM file(s)", False
    return name, ds, None, forced


_PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}


def materialize(ds: Dataset, depth: int = 0) -> None:
    """Convert every raw element now (pydicom converts lazily, on first access), so a
    corrupt element fails here, while parsing, not deep inside later code. Pixel data
    stays deferred."""
    if depth > 16:
        raise ValueError("sequences nested more than 16 deep")
    for tag in list(ds.keys()):
        if int(tag) in _PIXEL_TAGS:
            continue
        elem = ds[tag]
        if elem.VR == "SQ":
            for item in elem.value or []:
                materialize(item, depth + 1)


def _safe_member_name(member: zipfile.ZipInfo, archive: Path) -> str:
    name = member.filename
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if (posix.is_absolute() or windows.is_absolute() or windows.drive
            or ".." in posix.parts or ".." in windows.parts):
        raise InputError(
            f"{archive} holds a member with an unsafe path {name!r} (absolute or with '..'), "
            "which could write outside a folder when unzipped. covidct refuses such archives; "
            "re-create the zip from the series folder (e.g. `zip -r series.zip series/`)."
        )
    return name


def _read_zip(path: Path, max_expanded_bytes: int) -> tuple[list[tuple[str, bytes]], int]:
    """Members of a zip as (label, bytes), in name order, with every safety check applied."""
    out: list[tuple[str, bytes]] = []
    with zipfile.ZipFile(path) as archive:
        members = sorted((m for m in archive.infolist() if not m.is_dir()),
                         key=lambda m: m.filename)
        for member in members:
            _safe_member_name(member, path)
            if stat.S_ISLNK(member.external_attr >> 16):
                raise InputError(
                    f"{path} holds a symbolic link {member.filename!r}; covidct reads only "
                    "regular files from a zip. Re-create the zip without links (zip -r, no -y)."
                )
        members = [m for m in members if not PurePosixPath(m.filename).name.startswith(".")]
        declared = sum(m.file_size for m in members)
        if declared > max_expanded_bytes:
            raise _bomb(path, declared, max_expanded_bytes)
        total = 0
        for member in members:
            if (member.file_size > _RATIO_MIN_BYTES and
                    member.file_size > MAX_COMPRESSION_RATIO * max(member.compress_size, 1)):
                raise InputError(
                    f"{path}: member {member.filename!r} expands {member.file_size} bytes from "
                    f"{member.compress_size} (more than {MAX_COMPRESSION_RATIO}x), the mark of a "
                    "zip bomb, not of DICOM images. covidct refuses it; unzip a trusted copy "
                    "yourself if it is genuine."
                )
            chunks = []
            with archive.open(member) as handle:  # sizes in the header may lie: count bytes
                while chunk := handle.read(_CHUNK):
                    total += len(chunk)
                    if total > max_expanded_bytes:
                        raise _bomb(path, total, max_expanded_bytes)
                    chunks.append(chunk)
            out.append((f"{path}!{member.filename}", b"".join(chunks)))
    return out, len(members)


def _bomb(path: Path, size: int, limit: int) -> InputError:
    return InputError(
        f"{path} expands to more than {limit} bytes ({size} bytes or more), past covidct's limit "
        "for a zip input (a zip bomb, or far more than one CT study). Unzip it yourself and "
        "give covidct the series folder."
    )


def read_dicom_tree(
    path: str | Path,
    max_workers: int | None = None,
    max_expanded_bytes: int = MAX_EXPANDED_BYTES,
) -> ReadReport:
    """Parse every file under ``path`` (folder, file or zip) as DICOM.

    Raises ``InputError`` for a missing path, an unsafe or oversized zip, a symlink loop,
    or an unreadable zip. Files that are not DICOM are listed in ``ReadReport.skipped``.
    """
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
        for name in files:
            try:
                report.stats[name] = file_stamp(Path(name))
            except OSError:
                continue
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(lambda f: _parse(f, f), files))
    elif is_zip(path):
        before = file_stamp(path)
        try:
            members, report.n_files = _read_zip(path, max_expanded_bytes)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError,
                OSError, ValueError) as exc:
            raise InputError(
                f"{path} looks like a .zip archive but cannot be read ({exc}). "
                "Expected a complete zip of DICOM files; re-download or unzip it yourself."
            ) from exc
        require_unchanged(path, before)
        results = [_parse(label, io.BytesIO(data)) for label, data in members]
    else:
        report.n_files = 1
        report.stats[str(path)] = file_stamp(path)
        results = [_parse(str(path), str(path))]
    for name, ds, reason, forced in results:
        if ds is None:
            report.skip(reason or "unreadable file(s)", name)
        else:
            report.datasets.append((name, ds))
            if forced:
                report.forced.append(name)
    return report
