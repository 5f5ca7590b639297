"""The DICOM outputs of one analysis: seg.dcm, sr.dcm and sc/ (see dicom_seg, dicom_sr,
dicom_sc), written beside result.json.

``write_dicom_outputs(result, source_datasets, out_dir)`` is the one entry point (used by
``covidct analyze`` and meant for a PACS worker): ``source_datasets`` are the pydicom
datasets of the analysed series (other series among them are ignored; pixel data is not
needed), e.g. ``covidct.io.dicom_source.read_source_datasets(path)`` or the instances
retrieved from a PACS. UIDs are deterministic (covidct.export.dicom_uids).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from covidct import __version__
from covidct.errors import InputError
from covidct.export.dicom_sc import build_sc_images, write_sc_images
from covidct.export.dicom_seg import build_seg
from covidct.export.dicom_sr import build_sr
from covidct.export.dicom_uids import OutputUIDs
from covidct.io.dicom_source import read_source_datasets, source_stack
from covidct.io.library_warnings import collect
from covidct.pipeline import CaseResult
from covidct.volume import Volume

log = logging.getLogger(__name__)

PIXEL_DATA = 0x7FE00010
# Type 2 attributes (present, may be empty) that the derived objects copy from the source:
# an anonymised source may lack them; the objects then carry them empty.
_TYPE2_FROM_SOURCE = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                      "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
                      "ReferringPhysicianName")

SEG_NAME = "seg.dcm"
SR_NAME = "sr.dcm"
SC_FOLDER = "sc"


def write_dicom_outputs(result: CaseResult, source_datasets: Sequence[Dataset],
                        out_dir: str | Path, doc: dict[str, Any] | None = None) -> list[Path]:
    """Write seg.dcm, sr.dcm and sc/sc_KKKK.dcm into ``out_dir``; returns their paths
    (SEG, SR, then the SC images in slice order).

    result: the analysis of the volume loaded from these datasets (``covidct.analyze``).
    doc: the result.json document the SR must match (built from ``result`` when None).
    Raises InputError when the datasets are not the analysed series (another series,
    other slices), have no SeriesInstanceUID, or are Enhanced (multi-frame) CT.
    """
    from covidct.export.result_json import build_result

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    series_key = result.volume.metadata.get("series_uid")
    stack = source_stack(source_datasets, series_key)
    stack = replace(stack, datasets=tuple(_header_copy(ds) for ds in stack.datasets))
    stack.require_matches(result.volume)
    uids = OutputUIDs.for_result(stack.series_uid, __version__, result.models,
                                 result.config.to_dict())
    if doc is None:
        doc = build_result(result, {}, {})
    with warnings.catch_warnings():
        # highdicom warns on every object built from a source whose PatientName has one
        # component (common after anonymisation); the name is copied as the source has it
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended "
                                "person name", category=UserWarning)
        seg = build_seg(result, stack, uids)
        seg_path = out_dir / SEG_NAME
        seg.save_as(seg_path, enforce_file_format=True)
        sr_path = out_dir / SR_NAME
        build_sr(doc, seg, stack, uids).save_as(sr_path, enforce_file_format=True)
        sc_dir = out_dir / SC_FOLDER
        if sc_dir.is_dir():  # a re-run replaces the previous captures
            for old in sc_dir.glob("sc_*.dcm"):
                old.unlink()
        sc_paths = write_sc_images(build_sc_images(result, stack, uids), sc_dir)
    log.info("DICOM outputs: %s, %s, %d secondary captures", seg_path, sr_path, len(sc_paths))
    return [seg_path, sr_path, *sc_paths]


def _header_copy(ds: Dataset) -> Dataset:
    """A new dataset with the source's header elements, without its pixel data (neither read
    nor needed), and empty Type 2 attributes where the source lacks them. The source
    dataset is not modified."""
    copy = Dataset()
    for tag in ds.keys():
        if tag != PIXEL_DATA:  # accessing a deferred element would read it from disk
            copy[tag] = ds[tag]
    copy.filename = getattr(ds, "filename", None)
    if hasattr(ds, "file_meta"):
        copy.file_meta = ds.file_meta
    for keyword in _TYPE2_FROM_SOURCE:
        if keyword not in copy:
            setattr(copy, keyword, "")
    _default_character_set(copy)
    return copy


def _default_character_set(ds: Dataset) -> None:
    """An empty SpecificCharacterSet (common in real exports; it means the default
    repertoire) is removed, and an empty first value of a code-extension list becomes its
    explicit name, ISO 2022 IR 6 (PS3.3 C.12.1.1.2): highdicom refuses empty values."""
    if "SpecificCharacterSet" not in ds:
        return
    value = ds.SpecificCharacterSet
    values = [str(v).strip() for v in ([value] if isinstance(value, str) else value)]
    if not any(values):
        del ds.SpecificCharacterSet
    elif "" in values:
        ds.SpecificCharacterSet = [v or "ISO 2022 IR 6" for v in values]


def dicom_sources_with_reason(volume: Volume, dicom_out: bool | None
                              ) -> tuple[list[Dataset] | None, str | None]:
    """(the source datasets for the DICOM outputs of ``volume`` or None, and why a DICOM
    input gets none: None when it gets them or is not DICOM).

    Read again (headers only) from volume.metadata["source_path"]. dicom_out None (the
    default): written when the input is DICOM and the series can carry them (otherwise the
    reason is logged and returned, for result.json); True: required (InputError when
    impossible); False: never. Callers check this before the analysis, so a failure costs
    nothing.
    """
    if dicom_out is False:
        return None, None
    meta = volume.metadata
    source = meta.get("source_path")
    if meta.get("format") != "dicom" or not source:
        if dicom_out:
            raise InputError(
                f"--dicom-out (dicom_out=True) needs a DICOM input, the CT series the objects "
                f"reference; the input {source or '(an in-memory volume)'} is "
                f"{meta.get('format') or 'not DICOM'}. Give the DICOM series, or drop "
                "--dicom-out.")
        return None, None
    with collect("pydicom"):  # the same files again: loading the volume reported their warnings
        datasets = read_source_datasets(source)
    try:
        source_stack(datasets, meta.get("series_uid")).require_matches(volume)
    except InputError as exc:
        if dicom_out:
            raise
        log.warning("DICOM outputs are not written: %s", exc)
        return None, str(exc)
    return datasets, None
