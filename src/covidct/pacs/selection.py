"""Which series the worker analyses: axial CT image series, nothing else.

Decided from the series' DICOM JSON metadata (WADO-RS, PS3.18 F.2), before any pixel data is
fetched. Skipped, with the reason recorded: other modalities and non-image objects (SR, SEG,
secondary captures, by Modality and SOP Class), covidct's own outputs
(``is_covidct_output``), localizers (ImageType LOCALIZER), non-axial series (slice normal
more than ``MAX_TILT_DEG`` from the patient's z axis) and series with too few slices to be a
chest CT.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import tag_for_keyword

CT_IMAGE_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.2",    # CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT Image Storage
})
OWN_MODEL_NAME = "covidct"  # ManufacturerModelName of every object covidct writes
MAX_TILT_DEG = 40.0  # gantry tilts stay well below; coronal/sagittal are at 90
MIN_SLICES = 16

DicomJson = Mapping[str, Any]


def json_values(item: DicomJson, keyword: str) -> list[Any]:
    """The values of one attribute of a DICOM JSON object ([] when absent or empty)."""
    element = item.get(f"{tag_for_keyword(keyword):08X}") or {}
    return list(element.get("Value", []))


def json_first(item: DicomJson, keyword: str, default: Any = None) -> Any:
    values = json_values(item, keyword)
    return values[0] if values else default


def is_covidct_output(item: DicomJson) -> bool:
    """True for an object covidct wrote (its SEG, SR or secondary captures): the
    ManufacturerModelName "covidct", or the Manufacturer "covidct" with a SeriesDescription
    starting "covidct " on an object that is not a CT image."""
    def text(keyword: str) -> str:
        return str(json_first(item, keyword, "") or "").strip().lower()

    if text("ManufacturerModelName") == OWN_MODEL_NAME:
        return True
    return (text("Manufacturer") == OWN_MODEL_NAME
            and text("SeriesDescription").startswith(OWN_MODEL_NAME + " ")
            and str(json_first(item, "SOPClassUID", "")) not in CT_IMAGE_SOP_CLASSES)


@dataclass(frozen=True)
class Verdict:
    """accept: analyse this series; reason: why (or why not), for the log and the state."""

    accept: bool
    reason: str


def _normal_z(orientation: Sequence[Any]) -> float | None:
    try:
        r = [float(v) for v in orientation[:3]]
        c = [float(v) for v in orientation[3:6]]
    except (TypeError, ValueError):
        return None
    n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    norm = math.sqrt(sum(v * v for v in n))
    return abs(n[2]) / norm if norm > 0 else None


def _frames(item: DicomJson) -> int:
    try:
        return max(1, int(json_first(item, "NumberOfFrames", 1)))
    except (TypeError, ValueError):
        return 1


def _orientation(item: DicomJson) -> list[Any]:
    """ImageOrientationPatient, top-level or in the shared functional groups (enhanced CT)."""
    direct = json_values(item, "ImageOrientationPatient")
    if direct:
        return direct
    for group in json_values(item, "SharedFunctionalGroupsSequence")[:1]:
        for plane in json_values(group, "PlaneOrientationSequence")[:1]:
            return json_values(plane, "ImageOrientationPatient")
    return []


def select_series(instances: Sequence[DicomJson], *, min_slices: int = MIN_SLICES,
                  max_tilt_deg: float = MAX_TILT_DEG) -> Verdict:
    """Whether one series (its instances' metadata) is an axial CT series to analyse."""
    if not instances:
        return Verdict(False, "the series holds no instances")
    first = instances[0]
    modality = str(json_first(first, "Modality", "") or "?")
    if any(is_covidct_output(item) for item in instances):
        return Verdict(False, f"a covidct output ({modality})")
    if modality != "CT":
        return Verdict(False, f"modality {modality}, not CT")
    classes = {str(json_first(item, "SOPClassUID", "")) for item in instances}
    if not classes <= CT_IMAGE_SOP_CLASSES:
        other = sorted(classes - CT_IMAGE_SOP_CLASSES)
        return Verdict(False, f"not CT images (SOP Class {', '.join(other)})")
    images = [item for item in instances
              if "LOCALIZER" not in {str(v).upper() for v in json_values(item, "ImageType")}]
    if not images:
        return Verdict(False, "a localizer (ImageType LOCALIZER)")
    normals = [_normal_z(_orientation(item)) for item in images]
    axial = [n for n in normals if n is not None and n >= math.cos(math.radians(max_tilt_deg))]
    if len(axial) * 2 <= len(images):
        return Verdict(False, "not axial: the image planes are more than "
                              f"{max_tilt_deg:.0f} degrees from transverse (or have no "
                              "ImageOrientationPatient)")
    slices = sum(_frames(item) for item in images)
    if slices < min_slices:
        return Verdict(False, f"{slices} axial image(s); a chest CT series has at least "
                              f"{min_slices}")
    return Verdict(True, f"axial CT, {slices} slices")
