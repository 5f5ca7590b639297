"""The worker's state file: the last change handled and what became of each series.

One JSON document, rewritten atomically (a temporary file in the same folder, fsync, then
``os.replace``), so a worker killed at any moment leaves either the old or the new state,
never a torn file. A restarted worker reads it and resumes after ``last_seq``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from covidct.errors import InputError

STATE_VERSION = 1
DONE, FAILED, SKIPPED = "done", "failed", "skipped"


@dataclass
class SeriesRecord:
    """What the worker did with one series: status done / failed / skipped, and why."""

    status: str
    study_uid: str
    reason: str = ""
    stored_sop_uids: list[str] = field(default_factory=list)
    at: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "study_uid": self.study_uid, "reason": self.reason,
                "stored_sop_uids": list(self.stored_sop_uids), "at": self.at}


@dataclass
class WorkerState:
    """last_seq: the Orthanc change sequence number handled last (0: none);
    series: SeriesInstanceUID -> SeriesRecord."""

    last_seq: int = 0
    series: dict[str, SeriesRecord] = field(default_factory=dict)

    def record(self, series_uid: str, status: str, study_uid: str, reason: str = "",
               stored: list[str] | None = None) -> SeriesRecord:
        rec = SeriesRecord(status, study_uid, reason, list(stored or []),
                           datetime.now(UTC).isoformat(timespec="seconds"))
        self.series[series_uid] = rec
        return rec

    def is_done(self, series_uid: str) -> bool:
        rec = self.series.get(series_uid)
        return rec is not None and rec.status == DONE

    def to_json(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "last_seq": self.last_seq,
                "series": {uid: rec.to_json() for uid, rec in sorted(self.series.items())}}


def load_state(path: Path) -> WorkerState:
    """The state in ``path``, or a fresh one when the file does not exist.

    Raises InputError when the file exists but is not a covidct worker state."""
    if not path.exists():
        return WorkerState()
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("version") != STATE_VERSION:
            raise ValueError(f"version {doc.get('version')!r}, expected {STATE_VERSION}")
        series = {uid: SeriesRecord(rec["status"], rec["study_uid"], rec.get("reason", ""),
                                    list(rec.get("stored_sop_uids", [])), rec.get("at", ""))
                  for uid, rec in doc.get("series", {}).items()}
        return WorkerState(int(doc["last_seq"]), series)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(
            f"The worker state file {path} cannot be read ({exc}). It is written by "
            "`covidct pacs`; give another --state file, or delete this one to start over "
            "(the worker then checks the PACS for outputs it already stored).") from exc


def save_state(state: WorkerState, path: Path) -> None:
    """Write ``state`` to ``path`` atomically (temporary file + fsync + os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(state.to_json(), handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
