"""Load one CT series from DICOM (folder tree, single file or .zip) as a Volume.

HU = stored value * RescaleSlope + RescaleIntercept, per slice. Voxels outside the
scan field of view (PixelPaddingValue, or HU <= -2000 such as -2048 / -3024) are set
to PADDING_HU = -1024, the lowest value a CT scanner reports for air, so that padding
never reads as something denser than air or as an impossible value.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID

from covidct.errors import InputError
from covidct.io.dicom_files import ReadReport, read_dicom_tree
from covidct.io.dicom_geometry import stack_geometry
from covidct.io.dicom_scan import NON_CT_IMAGE, CTImage, ct_images, describe, invalid_uids
from covidct.io.dicom_series import choose_series, group_series
from covidct.io.library_warnings import collect
from covidct.io.orient import canonical_axes, orientation_label, to_canonical
from covidct.volume import Volume

logger = logging.getLogger(__name__)

PADDING_HU = -1024
PADDING_THRESHOLD_HU = -2000  # values at or below are outside the field of view


def load_dicom(path: str | Path, series_uid: str | None = None) -> Volume:
    """The chosen CT series under ``path`` as a canonical axial Volume.

    pydicom's per-file warnings (e.g. an invalid UI value in each of 167 files) are
    collected and reported once per kind with a count, in ``Volume.warnings``.
    """
    with collect("pydicom") as library:
        volume = _load_dicom(Path(path), series_uid)
    extra = library.summary("pydicom")
    for message in extra:
        logger.warning("%s", message)
    return volume.with_warnings(*extra) if extra else volume


def _load_dicom(path: Path, series_uid: str | None) -> Volume:
    report = read_dicom_tree(path)
    images: list[CTImage] = []
    bad_uids: list[str] = []
    for name, ds in report.datasets:
        try:
            found, reason = ct_images(name, ds)
        except Exception as exc:  # corrupt values (e.g. '' or 'abc' as a number)
            logger.debug("cannot use %s: %s", name, exc)
            found, reason = [], "image(s) with corrupt header values"
        if reason:
            report.skip(reason, name)
        elif found:
            bad_uids.extend(invalid_uids(ds))
        images.extend(found)
    if not images:
        raise InputError(_nothing_usable_message(path, report))

    series, notes = group_series(images)
    if not series:
        raise InputError(
            f"{path}: the only CT images found are lone images of another orientation "
            "(localizers). Expected an axial CT series; export the full series from the PACS."
        )
    chosen, choose_notes = choose_series(series, series_uid)
    info = describe(chosen.images[0].dataset)
    thickness = info["slice_thickness_mm"] or _enhanced_thickness(chosen.images[0].dataset)
    geometry = stack_geometry(chosen.images, thickness)

    hu, n_padding = _decode_hu(geometry.images)
    report.check_unchanged(sorted({img.source for img in geometry.images}))
    hu, affine = to_canonical(hu, geometry.affine)

    found = []
    for s in series:
        entry = s.summary()
        entry["chosen"] = s is chosen
        found.append(entry)
    warnings = list(notes) + list(choose_notes) + geometry.warnings
    if report.forced:
        warnings.append(
            f"{len(report.forced)} file(s) are not conformant DICOM Part-10 files (no 128-byte "
            "preamble, 'DICM' prefix or file meta information / TransferSyntaxUID, e.g. "
            f"{report.forced[0]}); they were read with pydicom's force=True and the transfer "
            "syntax of their encoding"
        )
    if bad_uids:
        warnings.append(
            f"{len(bad_uids)} UID value(s) are not valid DICOM UIDs (digits and dots, at most 64 "
            f"characters), e.g. {bad_uids[0]!r} (UUID-style UIDs from an anonymizer); they were "
            "read as given"
        )
    if len(series) > 1:
        others = ", ".join(f"{e['series_uid']} ({e['orientation']}, {e['n_positions']} slices)"
                           for e in found if not e["chosen"])
        warnings.append(
            f"chose series {chosen.key} ({chosen.plane}, {len(geometry.images)} slices); "
            f"also found: {others}"
        )
    ignored = {r: n for r, n in report.skipped.items() if r != "non-DICOM file(s)"}
    if ignored:
        summary = "; ".join(f"{len(n)} {r} (e.g. {n[0]})" for r, n in ignored.items())
        warnings.append(f"ignored while reading {path}: {summary}")
    if chosen.uid is None:
        warnings.append(
            f"the series has no SeriesInstanceUID; its images were grouped by study, series "
            f"number, description and frame of reference and it is called {chosen.key} here "
            "(pass that to --series)"
        )
    no_modality = sum(1 for img in geometry.images if not img.has_modality)
    if no_modality:
        warnings.append(
            f"{no_modality} image(s) have no Modality tag; accepted as CT because they are "
            "CT-like images (monochrome, with patient geometry)"
        )
    if info["gantry_tilt_deg"] and not geometry.gantry_tilt_deg:
        warnings.append(
            f"GantryDetectorTilt is {info['gantry_tilt_deg']} degrees but the slice positions "
            "show no tilt (the scanner already corrected it)"
        )
    for message in warnings:
        logger.warning("%s", message)
    logger.info("loaded series %s: %s voxels", chosen.key, hu.shape)

    metadata: dict[str, Any] = {
        "source_path": str(path),
        "format": "dicom",
        "series_uid": chosen.key,
        "series_description": info["series_description"],
        "series_number": info["series_number"],
        "study_instance_uid": info["study_instance_uid"],
        "study_date": info["study_date"],
        "patient_id": info["patient_id"],
        "manufacturer": info["manufacturer"],
        "model": info["model"],
        "slice_thickness_mm": thickness,
        "kernel": info["kernel"],
        "transfer_syntax": _syntax_name(info["transfer_syntax"]),
        "orientation_source": chosen.plane,
        "orientation": orientation_label(affine),
        "gantry_tilt_deg": geometry.gantry_tilt_deg,
        "padding_hu": PADDING_HU,
        "padding_voxels": n_padding,
        "series_found": found,
        "skipped": {reason: len(names) for reason, names in report.skipped.items()},
    }
    if geometry.slice_positions_mm is not None:
        metadata["slice_positions_mm"] = geometry.slice_positions_mm
    perm, flips = canonical_axes(geometry.affine)
    if geometry.source_slice_index is not None and perm[0] == 0:  # per canonical z slice
        index = geometry.source_slice_index
        metadata["source_slice_index"] = index[::-1] if flips[0] else index
    return Volume(hu=hu, affine=affine, metadata=metadata, warnings=tuple(warnings))


def _enhanced_thickness(ds: Dataset) -> float | None:
    shared = ds.get("SharedFunctionalGroupsSequence")
    try:
        return float(shared[0].PixelMeasuresSequence[0].SliceThickness)
    except (AttributeError, IndexError, TypeError, ValueError):
        return None


def _syntax_name(uid: str | None) -> str | None:
    if not uid:
        return None
    name = UID(uid).name
    return f"{name} ({uid})" if name and name != uid else uid


def _nothing_usable_message(path: Path, report: ReadReport) -> str:
    if report.n_files == 0:
        return (f"{path} contains no files. Expected a folder of DICOM CT images (or a .zip, or a "
                "NIfTI/NRRD/MHA file); check the path or the export from the PACS.")
    reasons = report.skipped
    head = (f"No CT images found in {path}: read {report.n_files} file(s): "
            f"{report.skipped_summary()}.")
    if set(reasons) == {"non-DICOM file(s)"}:
        fix = ("Expected DICOM files (a CT series exported from the PACS) or a NIfTI/NRRD/MHA "
               "volume; none of these files is DICOM.")
    elif any(r.startswith(NON_CT_IMAGE) for r in reasons):
        fix = ("covidct analyses CT only (Modality CT); MR, CR/DX radiographs and other "
               "modalities cannot be used. Export the chest CT series instead.")
    elif any(r.startswith("localizer") for r in reasons):
        fix = ("Only localizer (scout) images were found; they are not a CT volume. "
               "Export the axial CT series of the study.")
    elif any("without pixel data" in r for r in reasons):
        fix = ("The DICOM objects hold no pixel data: export the images, not only their headers, "
               "or copy them again if the transfer was cut short.")
    elif any(r.startswith("colour") for r in reasons):
        fix = ("Colour (RGB) images are screenshots or secondary captures, not HU data; export "
               "the original CT series.")
    elif any(r.startswith("unreadable") for r in reasons):
        fix = ("The file(s) are truncated or corrupt; copy or export them again and check that "
               "the transfer completed.")
    else:
        fix = "Expected CT Image Storage objects of an axial chest CT series."
    return f"{head} {fix}"


def _decode_hu(images: list[CTImage]) -> tuple[np.ndarray, int]:
    """Decode each dataset once and return (hu (k, rows, cols), number of padding voxels)."""
    datasets: dict[int, Dataset] = {}
    for img in images:
        datasets.setdefault(id(img.dataset), img.dataset)
    sources = {id(img.dataset): img.source for img in images}
    workers = min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        decoded = dict(zip(datasets, pool.map(lambda k: _pixels(datasets[k], sources[k]),
                                              datasets), strict=True))
    integral = all(float(img.slope).is_integer() and float(img.intercept).is_integer()
                   and abs(img.slope) <= 1e4 and abs(img.intercept) <= 1e6 for img in images)
    rows, cols = images[0].shape
    # Integral HU go straight into int16 while every slice fits (real CT does); the first
    # slice that does not turns the volume into float32 (exact for these integers).
    out = np.empty((len(images), rows, cols), dtype=np.int16 if integral else np.float32)
    int16 = np.iinfo(np.int16)
    n_padding = 0
    for k, img in enumerate(images):
        raw = decoded[id(img.dataset)]
        raw = raw[img.frame] if img.frame is not None and raw.ndim == 3 else raw
        if raw.shape != (rows, cols):
            raise InputError(
                f"{img.source}: decoded pixel data has shape {raw.shape}, expected "
                f"{(rows, cols)} from Rows/Columns; the file is corrupt or truncated. "
                "Export it again."
            )
        pad = _padding_mask(img.dataset, raw)
        if integral:
            hu = raw.astype(np.int32) * int(img.slope) + int(img.intercept)
        else:
            hu = raw.astype(np.float32) * np.float32(img.slope) + np.float32(img.intercept)
        pad |= hu <= PADDING_THRESHOLD_HU
        hu[pad] = PADDING_HU
        n_padding += int(pad.sum())
        if out.dtype == np.int16 and (hu.min() < int16.min or hu.max() > int16.max):
            out = out.astype(np.float32)  # slices before k were exact int16
        out[k] = hu
    return out, n_padding


def _padding_mask(ds: Dataset, raw: np.ndarray) -> np.ndarray:
    value = ds.get("PixelPaddingValue")
    if value is None:
        return np.zeros(raw.shape, dtype=bool)
    limit = ds.get("PixelPaddingRangeLimit")
    if limit is None:
        return raw == value
    lo, hi = sorted((int(value), int(limit)))
    return (raw >= lo) & (raw <= hi)


def _pixels(ds: Dataset, source: str) -> np.ndarray:
    syntax = str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", "") or "")
    try:
        return ds.pixel_array
    except Exception as exc:  # decoders raise many types (NotImplementedError, ValueError, ...)
        name = _syntax_name(syntax) or "unknown transfer syntax"
        raise InputError(
            f"Cannot decode the pixel data of {source} (transfer syntax {name}): {exc}. "
            "Expected pixel data that pydicom and the installed plugins (pylibjpeg-openjpeg, "
            "pylibjpeg-libjpeg) can decode. Fix: re-export uncompressed, or decompress first "
            "(`gdcmconv --raw IN OUT` or `dcmdjpeg IN OUT`), or install a decoder for this "
            "syntax (e.g. python-gdcm)."
        ) from exc
