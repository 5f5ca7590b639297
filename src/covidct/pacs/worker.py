"""The PACS worker: follow Orthanc's changes feed, analyse each new axial CT series once,
store its DICOM SEG, SR and secondary captures into the same study (STOW-RS).

Restart-safe and idempotent:
- the state file (``covidct.pacs.state``) holds the last change handled and every series'
  outcome; it is saved after each series and each change, atomically;
- before analysing, the PACS is asked whether this covidct's outputs of the series are
  already there (a worker killed after storing, before saving its state), by the
  deterministic SeriesInstanceUIDs they get (``OutputProducer.expected_series_uids``);
- before storing, instances already in the PACS (same SOPInstanceUID: covidct's UIDs are
  deterministic) are left out, so nothing is ever stored twice;
- a PACS that is down or failing is retried with backoff (``covidct.pacs.client``); when it
  stays down the worker stops without moving past the change, and resumes there next time;
- a series whose analysis fails is recorded as failed with its reason, and the worker
  moves on.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pydicom
from pydicom.dataset import Dataset

from covidct.errors import CovidCTError, PacsError
from covidct.pacs.changes import STABLE_SERIES, SeriesRef, read_changes, resolve_series
from covidct.pacs.client import PacsAuthError, PacsClient, PacsNotFound, PacsUnavailable
from covidct.pacs.selection import (
    json_first,
    select_series,
)
from covidct.pacs.state import DONE, FAILED, SKIPPED, SeriesRecord, load_state, save_state

log = logging.getLogger(__name__)

class Producer(Protocol):
    """Runs the analysis (covidct.pacs.outputs.OutputProducer is the real one)."""

    def __call__(self, series_dir: Path, out_dir: Path) -> list[Path]:
        """(folder of the retrieved series, output folder) -> the DICOM objects to store."""

    def expected_series_uids(self, source_series_uid: str) -> dict[str, str]:
        """kind (SEG, SR, SC) -> the SeriesInstanceUID its output of that series gets."""


OUTPUT_KINDS = ("SEG", "SR", "SC")
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"


def output_kind(modality: str, sop_class: str) -> str:
    """SEG, SR, SC (secondary capture) or the modality, for one covidct output."""
    if sop_class.startswith(SECONDARY_CAPTURE_PREFIX):
        return "SC"
    return modality


def _store_order(datasets: list[Dataset]) -> list[list[Dataset]]:
    """The outputs grouped by series, secondary captures and SR first and the SEG last: a
    worker killed between two requests leaves the SEG missing, so the next run stores the
    rest (``existing_outputs`` needs all three series)."""
    rank = {"SC": 0, "SR": 1, "SEG": 2}
    groups: dict[str, list[Dataset]] = {}
    for ds in datasets:
        groups.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    return sorted(groups.values(), key=lambda g: rank.get(
        output_kind(str(g[0].Modality), str(g[0].SOPClassUID)), 1))


@dataclass(frozen=True)
class WatchSummary:
    """What one `watch` run did."""

    changes: int
    series: dict[str, int]  # status -> count


class PacsWorker:
    """Analyses the CT series of one PACS and stores the results back.

    client: the PACS; state_path: the state file (created when absent); producer: runs the
    analysis (``covidct.pacs.outputs.OutputProducer``); work_dir: where retrieved series and
    outputs are kept (default: a temporary folder per series, deleted afterwards).
    """

    def __init__(self, client: PacsClient, state_path: Path, producer: Producer, *,
                 work_dir: Path | None = None, min_slices: int | None = None) -> None:
        self.client = client
        self.state_path = state_path
        self.state = load_state(state_path)
        self.producer = producer
        self.work_dir = work_dir
        self.min_slices = min_slices

    def _save(self) -> None:
        save_state(self.state, self.state_path)

    def _record(self, ref: SeriesRef, status: str, reason: str,
                stored: list[str] | None = None) -> SeriesRecord:
        rec = self.state.record(ref.series_uid, status, ref.study_uid, reason, stored)
        self._save()
        level = logging.WARNING if status == FAILED else logging.INFO
        log.log(level, "series %s: %s (%s)", ref.series_uid, status, reason)
        return rec

    # -- what is in the PACS already ----------------------------------------------------
    def existing_outputs(self, ref: SeriesRef) -> set[str]:
        """The kinds (SEG, SR, SC) of this covidct's outputs of the series ``ref`` that the
        study already holds (found by their deterministic SeriesInstanceUIDs)."""
        expected = self.producer.expected_series_uids(ref.series_uid)
        present = {str(json_first(item, "SeriesInstanceUID"))
                   for item in self.client.search_series(ref.study_uid)}
        return {kind for kind, uid in expected.items() if uid in present}

    def present_sop_uids(self, study_uid: str, series_uids: set[str]) -> set[str]:
        """SOPInstanceUIDs the PACS already holds in these series of the study."""
        present: set[str] = set()
        for series_uid in sorted(series_uids):
            try:
                found = self.client.search_instances(study_uid, series_uid)
            except PacsNotFound:
                continue
            present.update(str(json_first(item, "SOPInstanceUID")) for item in found)
        return present

    # -- one series ---------------------------------------------------------------------
    @contextmanager
    def _folder(self, ref: SeriesRef) -> Iterator[Path]:
        if self.work_dir is not None:
            folder = self.work_dir / ref.series_uid
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            yield folder
        else:
            with tempfile.TemporaryDirectory(prefix="covidct-pacs-") as tmp:
                yield Path(tmp)

    def _analyse(self, ref: SeriesRef, folder: Path, timings: dict[str, float]) -> list[Dataset]:
        t0 = time.perf_counter()
        series_dir = folder / "series"
        self.client.retrieve_series(ref.study_uid, ref.series_uid, series_dir)
        t1 = time.perf_counter()
        paths = self.producer(series_dir, folder / "out")
        outputs = [pydicom.dcmread(p) for p in paths]
        timings["retrieve"], timings["analyse"] = t1 - t0, time.perf_counter() - t1
        wrong = [str(p) for p, ds in zip(paths, outputs, strict=True)
                 if str(ds.get("StudyInstanceUID", "")) != ref.study_uid]
        if wrong:
            raise CovidCTError(f"{len(wrong)} output(s) are not in study {ref.study_uid} "
                               f"(e.g. {wrong[0]}); nothing was stored.")
        return outputs

    def handle_series(self, ref: SeriesRef, *, force: bool = False) -> SeriesRecord:
        """Analyse one series and store its outputs, unless done before or not axial CT.

        A series recorded as skipped or failed is looked at again (Orthanc reports a series
        stable again when instances are added to it). force: analyse again a series the
        state file records as done (outputs already in the PACS are still not stored
        twice). Raises PacsUnavailable / PacsAuthError when the PACS cannot be used
        (nothing is recorded then)."""
        known = self.state.series.get(ref.series_uid)
        if known is not None and known.status == DONE and not force:
            log.info("series %s: done before (%s)", ref.series_uid, known.reason)
            return known
        try:
            return self._handle(ref)
        except (PacsUnavailable, PacsAuthError):
            raise
        except CovidCTError as exc:
            return self._record(ref, FAILED, str(exc))
        except Exception as exc:  # noqa: BLE001 - one bad study must not stop the worker
            log.exception("series %s: unexpected error", ref.series_uid)
            return self._record(ref, FAILED, f"unexpected {type(exc).__name__}: {exc}")

    def _handle(self, ref: SeriesRef) -> SeriesRecord:
        meta = self.client.series_metadata(ref.study_uid, ref.series_uid)
        kwargs = {} if self.min_slices is None else {"min_slices": self.min_slices}
        verdict = select_series(meta, **kwargs)
        if not verdict.accept:
            return self._record(ref, SKIPPED, verdict.reason)
        if set(OUTPUT_KINDS) <= self.existing_outputs(ref):
            return self._record(ref, DONE, "covidct outputs of this version already in the "
                                           "PACS; nothing stored")
        log.info("series %s (%s): analysing", ref.series_uid, verdict.reason)
        timings: dict[str, float] = {}
        with self._folder(ref) as folder:
            outputs = self._analyse(ref, folder, timings)
        started = time.perf_counter()
        present = self.present_sop_uids(ref.study_uid,
                                        {str(ds.SeriesInstanceUID) for ds in outputs})
        new = [ds for ds in outputs if str(ds.SOPInstanceUID) not in present]
        stored: list[str] = []
        for batch in _store_order(new):  # one STOW-RS per series, the SEG last
            stored += self.client.store(batch, ref.study_uid)
        kinds = sorted({output_kind(str(ds.Modality), str(ds.SOPClassUID)) for ds in outputs})
        timings["store"] = time.perf_counter() - started
        reason = (f"stored {len(stored)} instance(s) ({', '.join(kinds)}); "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
        if len(new) < len(outputs):
            reason += f"; {len(outputs) - len(new)} already in the PACS"
        return self._record(ref, DONE, reason, stored)

    # -- a study, the feed --------------------------------------------------------------
    def run_study(self, study_uid: str, *, force: bool = False) -> dict[str, SeriesRecord]:
        """Every series of one study, on demand (``covidct pacs run``): SeriesInstanceUID ->
        what became of it."""
        series = self.client.search_series(study_uid)
        if not series:
            raise PacsNotFound(f"The PACS at {self.client.url} has no study {study_uid} "
                               "(or it holds no series); check the StudyInstanceUID.")
        records = {}
        for item in sorted(series, key=lambda s: str(json_first(s, "SeriesInstanceUID"))):
            ref = SeriesRef(study_uid, str(json_first(item, "SeriesInstanceUID")))
            records[ref.series_uid] = self.handle_series(ref, force=force)
        return records

    def watch(self, *, page_limit: int = 100, poll_s: float = 5.0, once: bool = False,
              max_changes: int | None = None,
              sleep: Callable[[float], None] = time.sleep) -> WatchSummary:
        """Follow the changes feed from the state's last_seq.

        once: return when the feed is exhausted; max_changes: return after handling that
        many changes (any type); else poll every ``poll_s`` seconds, forever."""
        handled = 0
        counts: dict[str, int] = {}
        while True:
            page = read_changes(self.client, self.state.last_seq, page_limit)
            for change in page.changes:
                if max_changes is not None and handled >= max_changes:
                    return WatchSummary(handled, counts)
                if change.change_type == STABLE_SERIES:
                    try:
                        ref = resolve_series(self.client, change.resource_id)
                    except PacsNotFound:
                        log.info("series %s was deleted before its turn", change.resource_id)
                    else:
                        rec = self.handle_series(ref)
                        counts[rec.status] = counts.get(rec.status, 0) + 1
                self.state.last_seq = change.seq
                self._save()
                handled += 1
            if page.changes and page.last > self.state.last_seq:
                self.state.last_seq = page.last
                self._save()
            if page.done or not page.changes:
                if once or (max_changes is not None and handled >= max_changes):
                    return WatchSummary(handled, counts)
                sleep(poll_s)


def check_pacs(client: PacsClient) -> dict[str, Any]:
    """Fail early, with a clear message, when the PACS is unreachable or refuses us."""
    try:
        return client.check()
    except PacsNotFound as exc:
        raise PacsError(f"{client.url}/system is not there: is --url the root of an Orthanc "
                        f"server? ({exc})") from None
