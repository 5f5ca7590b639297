"""Turn parsed DICOM datasets into CT image records and group them into series.

A record is one 2D CT image (one frame of an Enhanced CT object counts as one).
Objects that are not CT images are skipped with a reason (kept for error messages).
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
LEGACY_ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.2"
_CT_CLASSES = {CT_IMAGE, ENHANCED_CT, LEGACY_ENHANCED_CT}
_SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
_NON_IMAGE_MODALITIES = {"SR", "SEG", "PR", "KO", "REG", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD"}

# Skip reasons that mean "this is an image, just not a CT" (used to word errors).
NON_CT_IMAGE = "image(s) of a non-CT modality"


@dataclass(eq=False)
class CTImage:
    """One 2D CT image with its geometry; pixels are decoded later from ``dataset``."""

    source: str
    dataset: Dataset
    frame: int | None  # index into a multi-frame object, None for a single-frame image
    sop_uid: str
    series_key: str
    series_uid: str | None
    position: np.ndarray  # ImagePositionPatient (LPS mm) of the first voxel
    row_dir: np.ndarray  # direction of increasing column index (IOP[:3])
    col_dir: np.ndarray  # direction of increasing row index (IOP[3:])
    pixel_spacing: tuple[float, float]  # (between rows, between columns) mm
    shape: tuple[int, int]  # (rows, columns)
    slope: float
    intercept: float
    instance_number: int
    has_modality: bool
    phase: tuple[int | None, int | None] = (None, None)  # (AcquisitionNumber, TemporalPosition)

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_dir, self.col_dir)


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def sop_class_of(ds: Dataset) -> str:
    value = _text(ds, "SOPClassUID")
    if not value and hasattr(ds, "file_meta"):
        value = str(ds.file_meta.get("MediaStorageSOPClassUID", "") or "")
    return value


def sop_instance_of(ds: Dataset) -> str:
    value = _text(ds, "SOPInstanceUID")
    if not value and hasattr(ds, "file_meta"):
        value = str(ds.file_meta.get("MediaStorageSOPInstanceUID", "") or "")
    return value


def series_key_of(ds: Dataset) -> tuple[str, str | None]:
    """(grouping key, SeriesInstanceUID or None). Without a UID, group by a header digest."""
    uid = _text(ds, "SeriesInstanceUID")
    if uid:
        return uid, uid
    parts = [
        _text(ds, k)
        for k in ("StudyInstanceUID", "SeriesNumber", "SeriesDescription", "FrameOfReferenceUID",
                  "Rows", "Columns", "PatientID")
    ]
    digest = hashlib.sha1("|".join(parts).encode()).hexdigest()[:12]
    return f"no-series-uid-{digest}", None


def _float(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _item(ds: Dataset, seq: str) -> Dataset | None:
    value = ds.get(seq)
    return value[0] if value else None


def _lookup(groups: list[Dataset | None], seq: str, keyword: str) -> Any:
    """A functional-group attribute: per-frame group first, then the shared one."""
    for group in groups:
        item = _item(group, seq) if group is not None else None
        if item is not None and keyword in item:
            return item.get(keyword)
    return None


def _skip_reason(ds: Dataset, sop_class: str) -> str | None:
    modality = _text(ds, "Modality").upper()
    if modality in _NON_IMAGE_MODALITIES:
        return f"non-image object(s) ({modality})"
    if sop_class.startswith(_SECONDARY_CAPTURE_PREFIX):
        return "secondary capture image(s)"
    if sop_class and sop_class not in _CT_CLASSES and "PixelData" not in ds:
        return "non-image object(s)"
    if modality and modality != "CT":
        return f"{NON_CT_IMAGE} ({modality})"
    if sop_class and sop_class not in _CT_CLASSES:
        return f"non-CT object(s) (SOP class {sop_class})"
    if "PixelData" not in ds:
        # a header-only export, or a file cut short before its pixel data (pydicom then
        # also reports the end of file, in the aggregated library warnings)
        return "CT object(s) without pixel data (header only, or the file is cut short)"
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = _text(ds, "PhotometricInterpretation").upper()
    if samples != 1 or (photometric and not photometric.startswith("MONOCHROME")):
        return f"colour (RGB) image(s) ({photometric or samples} samples)"
    image_type = _text(ds, "ImageType").upper()
    if "LOCALIZER" in image_type.split("\\"):
        return "localizer (scout) image(s)"
    return None


def ct_images(name: str, ds: Dataset) -> tuple[list[CTImage], str | None]:
    """The CT images in one dataset, or ([], reason) when it is not a usable CT image."""
    sop_class = sop_class_of(ds)
    reason = _skip_reason(ds, sop_class)
    if reason:
        return [], reason
    key, uid = series_key_of(ds)
    sop_uid = sop_instance_of(ds)
    has_modality = bool(_text(ds, "Modality"))
    instance = int(_float(ds.get("InstanceNumber"), 0))
    shape = (int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0))
    n_frames = int(_float(ds.get("NumberOfFrames"), 1))
    if "PerFrameFunctionalGroupsSequence" in ds or sop_class in (ENHANCED_CT, LEGACY_ENHANCED_CT):
        return _enhanced_frames(name, ds, key, uid, sop_uid, instance, shape, has_modality)
    if n_frames > 1:
        return [], "multi-frame image(s) without per-frame geometry"
    ipp, iop, spacing = (ds.get(k) for k in ("ImagePositionPatient", "ImageOrientationPatient",
                                             "PixelSpacing"))
    if not ipp or not iop or not spacing or len(iop) != 6 or len(ipp) != 3:
        return [], ("image(s) without patient geometry "
                    "(ImagePositionPatient/Orientation/PixelSpacing)")
    image = _make(name, ds, None, sop_uid, key, uid, ipp, iop, spacing, shape,
                  ds.get("RescaleSlope"), ds.get("RescaleIntercept"), instance, has_modality)
    return [image], None


def _make(name, ds, frame, sop_uid, key, uid, ipp, iop, spacing, shape, slope, intercept,
          instance, has_modality) -> CTImage:
    iop_arr = np.asarray([float(v) for v in iop], dtype=np.float64)
    position = np.asarray([float(v) for v in ipp], dtype=np.float64)
    pixel_spacing = (float(spacing[0]), float(spacing[1]))
    norms = np.linalg.norm(iop_arr[:3]), np.linalg.norm(iop_arr[3:])
    if (not np.all(np.isfinite(iop_arr)) or not np.all(np.isfinite(position))
            or min(norms) < 1e-6 or not all(math.isfinite(v) and v > 0 for v in pixel_spacing)
            or float(np.linalg.norm(np.cross(iop_arr[:3], iop_arr[3:])))
            < 1e-3 * norms[0] * norms[1]
            or min(shape) < 1):
        raise ValueError("invalid geometry (ImagePositionPatient/Orientation/PixelSpacing)")
    row_dir = iop_arr[:3] / norms[0]
    col_dir = iop_arr[3:] / norms[1]
    return CTImage(
        source=name, dataset=ds, frame=frame, sop_uid=sop_uid, series_key=key, series_uid=uid,
        position=position, row_dir=row_dir, col_dir=col_dir,
        pixel_spacing=pixel_spacing, shape=shape,
        slope=_float(slope, 1.0), intercept=_float(intercept, 0.0),
        instance_number=instance, has_modality=has_modality,
        phase=(_int_or_none(ds.get("AcquisitionNumber")),
               _int_or_none(ds.get("TemporalPositionIdentifier"))),
    )


def _int_or_none(value: Any) -> int | None:
    try:
        return int(float(value)) if value is not None and str(value).strip() != "" else None
    except (TypeError, ValueError):
        return None


def _enhanced_frames(name, ds, key, uid, sop_uid, instance, shape, has_modality):
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    n_frames = int(_float(ds.get("NumberOfFrames"), len(per_frame) or 1))
    out: list[CTImage] = []
    localizers = 0
    for f in range(n_frames):
        groups = [per_frame[f] if f < len(per_frame) else None, shared]
        frame_type = _lookup(groups, "CTImageFrameTypeSequence", "FrameType")
        if frame_type and "LOCALIZER" in [str(v).upper() for v in frame_type]:
            localizers += 1
            continue
        ipp = _lookup(groups, "PlanePositionSequence", "ImagePositionPatient")
        iop = _lookup(groups, "PlaneOrientationSequence", "ImageOrientationPatient")
        spacing = _lookup(groups, "PixelMeasuresSequence", "PixelSpacing")
        if not ipp or not iop or not spacing:
            return [], "Enhanced CT object(s) without per-frame geometry"
        slope = _lookup(groups, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _lookup(groups, "PixelValueTransformationSequence", "RescaleIntercept")
        out.append(_make(name, ds, f, f"{sop_uid}#{f}", key, uid, ipp, iop, spacing, shape,
                         slope, intercept, instance, has_modality))
    if not out:
        return [], "localizer (scout) image(s)" if localizers else "empty Enhanced CT object(s)"
    return out, None


ORIENTATION_TOL = 1e-3
"""Images whose direction cosines differ by at most this belong to one stack (about
0.06 degree; scanners write IOP with jitter of 1e-7..1e-5, a localizer differs by 1)."""
SPACING_RTOL = 1e-3
"""Relative tolerance on PixelSpacing for images of one stack."""


def same_grid(a: CTImage, b: CTImage) -> bool:
    """Do ``a`` and ``b`` share orientation, matrix size and pixel spacing (within tolerance)?

    Tolerances, not rounding: a rounding boundary splits values 1e-7 apart.
    """
    return (
        a.shape == b.shape
        and float(np.abs(a.row_dir - b.row_dir).max()) <= ORIENTATION_TOL
        and float(np.abs(a.col_dir - b.col_dir).max()) <= ORIENTATION_TOL
        and bool(np.allclose(a.pixel_spacing, b.pixel_spacing, rtol=SPACING_RTOL, atol=1e-6))
    )


def invalid_uids(ds: Dataset) -> list[str]:
    """The study/series/SOP instance UIDs of ``ds`` that are not valid UI values (PS3.5 9.1).

    A valid UID is at most 64 characters of digits and dots, components without leading
    zeros. UUID strings written by some anonymizers are not.
    """
    bad = []
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        value = _text(ds, keyword)
        if value and not _valid_uid(value):
            bad.append(value)
    return bad


def _valid_uid(value: str) -> bool:
    if len(value) > 64:
        return False
    parts = value.split(".")
    return all(p.isdigit() and p.isascii() and (p == "0" or not p.startswith("0"))
               for p in parts)


def describe(ds: Dataset) -> dict[str, Any]:
    """Series-level facts from one representative dataset."""
    return {
        "series_number": _text(ds, "SeriesNumber") or None,
        "series_description": _text(ds, "SeriesDescription") or None,
        "modality": _text(ds, "Modality") or None,
        "study_instance_uid": _text(ds, "StudyInstanceUID") or None,
        "study_date": _text(ds, "StudyDate") or None,
        "patient_id": _text(ds, "PatientID") or None,
        "manufacturer": _text(ds, "Manufacturer") or None,
        "model": _text(ds, "ManufacturerModelName") or None,
        "kernel": _text(ds, "ConvolutionKernel") or None,
        "slice_thickness_mm": _float(ds.get("SliceThickness"), 0.0) or None,
        "gantry_tilt_deg": _float(ds.get("GantryDetectorTilt"), 0.0),
        "transfer_syntax": str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", "") or "")
        or None,
    }
