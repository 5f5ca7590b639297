"""seg.dcm: a DICOM Segmentation (binary) of the analysis, on the source CT series.

One frame per source image and segment, empty frames included (``omit_empty_frames=False``):
viewers that place frames by their own index instead of their position then still draw
each frame on the right slice. Frames are in the source images' own grid (rows, columns,
orientation), so no viewer has to resample and a negative row or column cosine cannot
mirror the overlay. Written with highdicom (DICOM PS3.3 A.51, Segmentation IOD).

Segments (numbers are stable; the SR references them):

=====  ==============  ====================================  ==========================
 no.    label           property type (SNOMED CT)             mask
=====  ==============  ====================================  ==========================
 1      Right lung      3341006 Right lung                    lung_mask == 1
 2      Left lung       44029006 Left lung                    lung_mask == 2
 3      Airway          89187006 Airway structure             airway_mask
 4      Infection       52988006 Lesion (in 39607008 Lung)    infection_mask
 5      Ground-glass    DCM 112120 Ground glass opacity       lesion_labels == 1
 6      Consolidation   95436008 Lung consolidation           lesion_labels == 2
=====  ==============  ====================================  ==========================

Segments 5 and 6 split the infection by density (covidct.lesions) and are empty with
``--infection-method heatmap``. New masks are added by appending to ``SEGMENTS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from highdicom.sr.coding import CodedConcept
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from covidct import __version__
from covidct.export.dicom_uids import OutputUIDs
from covidct.io.dicom_source import SourceStack
from covidct.pipeline import CaseResult

MANUFACTURER = "covidct"
SEG_SERIES_NUMBER = 9901
ANATOMICAL_STRUCTURE = codes.SCT.AnatomicalStructure  # 91723000
MORPHOLOGICALLY_ABNORMAL = CodedConcept("49755003", "SCT", "Morphologically Abnormal Structure")
RIGHT_LUNG = CodedConcept("3341006", "SCT", "Right lung")
LEFT_LUNG = CodedConcept("44029006", "SCT", "Left lung")


GROUND_GLASS = CodedConcept("112120", "DCM", "Ground glass opacity")  # CID 6104
CONSOLIDATION = CodedConcept("95436008", "SCT", "Lung consolidation")


def _lesion_label(result: CaseResult, label: int) -> np.ndarray:
    """Voxels of lesion_labels == label (1 GGO, 2 consolidation); none without labels."""
    labels = getattr(result, "lesion_labels", None)
    if labels is None:
        return np.zeros(result.lung_mask.shape, dtype=bool)
    return np.asarray(labels) == label


@dataclass(frozen=True)
class SegmentSpec:
    """One segment: its label, SNOMED CT category and type, colour and canonical mask."""

    number: int
    label: str
    category: CodedConcept
    property_type: CodedConcept
    rgb: tuple[int, int, int]
    mask: Callable[[CaseResult], np.ndarray]
    anatomic_region: CodedConcept | None = None


SEGMENTS: tuple[SegmentSpec, ...] = (
    SegmentSpec(1, "Right lung", ANATOMICAL_STRUCTURE, RIGHT_LUNG, (0, 160, 255),
                lambda r: r.lung_mask == 1),
    SegmentSpec(2, "Left lung", ANATOMICAL_STRUCTURE, LEFT_LUNG, (0, 220, 120),
                lambda r: r.lung_mask == 2),
    SegmentSpec(3, "Airway", ANATOMICAL_STRUCTURE, codes.SCT.AirwayStructure, (200, 200, 255),
                lambda r: np.asarray(r.airway_mask) > 0),
    SegmentSpec(4, "Infection", MORPHOLOGICALLY_ABNORMAL, codes.SCT.Lesion, (255, 200, 0),
                lambda r: np.asarray(r.infection_mask) > 0, anatomic_region=codes.SCT.Lung),
    # the infection split by density (covidct.lesions; empty with --infection-method heatmap)
    SegmentSpec(5, "Ground-glass opacity", MORPHOLOGICALLY_ABNORMAL, GROUND_GLASS,
                (255, 240, 120), lambda r: _lesion_label(r, 1), anatomic_region=codes.SCT.Lung),
    SegmentSpec(6, "Consolidation", MORPHOLOGICALLY_ABNORMAL, CONSOLIDATION, (255, 90, 0),
                lambda r: _lesion_label(r, 2), anatomic_region=codes.SCT.Lung),
)
SEGMENT_NUMBER = {s.label: s.number for s in SEGMENTS}


def algorithm_identification(result: CaseResult) -> hd.AlgorithmIdentificationSequence:
    """name covidct, family Artificial Intelligence (DCM 123110), the version, and each
    model's name and sha256 as parameters."""
    parameters = {}
    for role, info in sorted(result.models.items()):
        parameters[f"{role} model"] = str(info.get("name") or "")
        parameters[f"{role} sha256"] = str(info.get("sha256") or "")
    return hd.AlgorithmIdentificationSequence(
        name="covidct", family=codes.cid7162.ArtificialIntelligence, version=__version__,
        source="Gozes et al. 2020 (arXiv 2003.05037)", parameters=parameters)


def segment_descriptions(result: CaseResult) -> list[hd.seg.SegmentDescription]:
    algorithm = algorithm_identification(result)
    return [
        hd.seg.SegmentDescription(
            segment_number=s.number, segment_label=s.label,
            segmented_property_category=s.category, segmented_property_type=s.property_type,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            anatomic_regions=[s.anatomic_region] if s.anatomic_region is not None else None,
            display_color=hd.color.CIELabColor.from_rgb(*s.rgb))
        for s in SEGMENTS
    ]


def build_seg(result: CaseResult, stack: SourceStack, uids: OutputUIDs) -> hd.seg.Segmentation:
    """The Segmentation dataset: frames (source image k, segment) as bits.

    result: the analysis of the volume loaded from ``stack`` (checked by the caller);
    masks are mapped from the canonical (z, y, x) grid to the source (k, row, column) order.
    """
    k, (rows, cols) = len(stack.datasets), stack.shape[1:]
    # Segment-major storage, passed as a (k, rows, cols, segment) view: highdicom's overlap
    # check sums over the segment axis, and over whole planes that is faster than over a
    # contiguous axis of 6 (benchmarks/results/seg_layout_speed.txt).
    planes = np.zeros((len(SEGMENTS), k, rows, cols), dtype=np.uint8)
    for n, spec in enumerate(SEGMENTS):
        planes[n] = stack.to_source(spec.mask(result))
    return hd.seg.Segmentation(
        source_images=list(stack.datasets),
        pixel_array=np.moveaxis(planes, 0, -1),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(result),
        series_instance_uid=uids.uid("seg series"),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=uids.uid("seg instance"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name="covidct",
        software_versions=__version__,
        device_serial_number="none",
        content_label="COVIDCT",
        content_description="covidct lungs, airway and infection (research use)",
        series_description="covidct segmentation (not for diagnostic use)",
        omit_empty_frames=False,
    )


def write_seg(seg: Dataset, path) -> None:
    seg.save_as(path, enforce_file_format=True)
