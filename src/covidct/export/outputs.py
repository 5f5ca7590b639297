"""Write every output of one analysis into a folder, timing each step."""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from covidct.export.nifti_outputs import write_nifti_outputs
from covidct.export.overlays import write_overlays
from covidct.export.profile import render_profile
from covidct.export.render3d import render_3d
from covidct.export.report import write_report
from covidct.export.result_json import build_result, write_result_json
from covidct.heap import release_free_heap
from covidct.pipeline import CaseResult

log = logging.getLogger(__name__)

EXPORT_STAGES = ("nifti", "overlays", "render 3d", "slice profile", "report")


def write_outputs(result: CaseResult, out_dir: Path, *, report: bool = True,
                  timings_s: dict[str, float] | None = None,
                  progress: Callable[[str], None] | None = None,
                  started: float | None = None,
                  dicom_sources: Sequence[Dataset] | None = None,
                  dicom_required: bool = False,
                  dicom_skipped: str | None = None) -> dict[str, Any]:
    """Write NIfTI, PNGs, result.json and (optionally) report.html into out_dir.

    dicom_sources: the datasets of the analysed DICOM series; when given, seg.dcm, sr.dcm
    and sc/ are written too (covidct.export.dicom_objects) and listed under
    outputs["dicom"]. When writing them fails, the error is raised if dicom_required, else
    it becomes a warning in result.json and the other outputs are still written.
    dicom_skipped: why a DICOM input gets no DICOM outputs (a warning in result.json).

    timings_s: timings measured before the analysis (read, load models); the pipeline's
    stage timings, the export steps and a
    total are added; started: time.perf_counter() at the start of the job (the total is then
    wall time, else the sum of the steps). Returns the result.json document.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings = {**(timings_s or {}), **result.timings_s}
    outputs: dict[str, Any] = {"result_json": "result.json"}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        value = fn()
        timings[f"export_{name.replace(' ', '_')}"] = round(time.perf_counter() - start, 3)
        return value

    def step(name: str, fn: Callable[[], Any]) -> Any:
        if progress is not None:
            progress(name)
        return timed(name, fn)

    # The NIfTI files and the DICOM objects are written on other threads while matplotlib
    # draws the pictures: they overlap where one of them releases the GIL (gzip, numpy,
    # PNG encoding). Each records its own duration; the total is wall time.
    dicom_doc = build_result(result, {}, {})  # what the SR reports; no outputs or timings
    release_free_heap()  # the analysis' freed batches, before the exports' large arrays
    with _no_cyclic_gc(), ThreadPoolExecutor(max_workers=2) as background:
        if progress is not None:
            progress("nifti")
        nifti = background.submit(timed, "nifti", lambda: write_nifti_outputs(result, out_dir))
        dicom = None
        if dicom_sources is not None:
            from covidct.export.dicom_objects import write_dicom_outputs

            if progress is not None:
                progress("dicom")
            dicom = background.submit(timed, "dicom", lambda: write_dicom_outputs(
                result, dicom_sources, out_dir, doc=dicom_doc))
        _write_pictures(result, out_dir, outputs, step)
        outputs.update(nifti.result())
        dicom_error = dicom.exception() if dicom is not None else None
    if report:
        outputs["report"] = "report.html"

    def total() -> float:
        if started is not None:
            return round(time.perf_counter() - started, 3)
        return round(sum(v for k, v in timings.items() if k != "total"), 3)

    timings["total"] = total()
    doc = build_result(result, outputs, timings)
    if dicom_skipped:
        doc["warnings"].append(f"DICOM outputs (SEG, SR, SC) were not written: {dicom_skipped}")
    if dicom is not None:
        if dicom_error is not None:  # highdicom raises many types on unusual source headers
            if dicom_required:
                raise dicom_error
            log.warning("DICOM outputs were not written: %s", dicom_error)
            doc["warnings"].append(f"DICOM outputs (SEG, SR, SC) were not written: {dicom_error}")
        else:
            names = [p.relative_to(out_dir).as_posix() for p in dicom.result()]
            doc["outputs"]["dicom"] = {"seg": names[0], "sr": names[1], "sc": names[2:]}
    if report:
        step("report", lambda: write_report(doc, out_dir))
    timings["total"] = total()
    doc["timings_s"] = timings
    write_result_json(doc, out_dir / "result.json")
    return doc


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Python's cyclic garbage collector paused: the SEG's tens of thousands of small
    datasets and matplotlib's artists otherwise trigger full collections that hold the
    GIL while the other threads wait. Collections resume afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _write_pictures(result: CaseResult, out_dir: Path, outputs: dict[str, Any],
                    step: Callable[[str, Callable[[], Any]], Any]) -> None:
    config = result.config
    outputs["overlays"] = step("overlays",
                               lambda: write_overlays(result, out_dir, config.overlay_count))
    step("render 3d", lambda: render_3d(result, out_dir / "render_3d.png",
                                        voxel_mm=config.render_voxel_mm))
    outputs["render_3d"] = "render_3d.png"
    step("slice profile", lambda: render_profile(result, out_dir / "slice_profile.png"))
    outputs["slice_profile"] = "slice_profile.png"
