"""Orthanc's changes feed (REST ``GET /changes?since=N&limit=M``).

Each change has a sequence number ``Seq``; ``Last`` is the highest one returned and ``Done``
says whether the feed is exhausted. A ``StableSeries`` change is logged once a series has
received no new instance for Orthanc's ``StableAge`` seconds: the moment to analyse it.
Orthanc-specific: DICOMweb has no change feed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from covidct.errors import PacsError
from covidct.pacs.client import PacsClient

STABLE_SERIES = "StableSeries"


@dataclass(frozen=True)
class Change:
    """One entry of the feed: seq, ChangeType, the Orthanc resource id it concerns."""

    seq: int
    change_type: str
    resource_id: str


@dataclass(frozen=True)
class ChangesPage:
    changes: tuple[Change, ...]
    last: int   # the sequence number to ask `since` next time
    done: bool  # no more changes after `last` for now


def read_changes(client: PacsClient, since: int, limit: int = 100) -> ChangesPage:
    """At most ``limit`` changes with Seq > ``since``."""
    doc = client.get_json("/changes", {"since": since, "limit": limit})
    try:
        changes = tuple(Change(int(c["Seq"]), str(c["ChangeType"]), str(c["ID"]))
                        for c in doc["Changes"])
        return ChangesPage(changes, int(doc["Last"]), bool(doc["Done"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise PacsError(f"{client.url}/changes did not answer like Orthanc's changes feed "
                        f"({exc!r}); is --url the root of an Orthanc server?") from exc


@dataclass(frozen=True)
class SeriesRef:
    """A series by its DICOM UIDs (what DICOMweb needs)."""

    study_uid: str
    series_uid: str


def resolve_series(client: PacsClient, orthanc_id: str) -> SeriesRef:
    """The StudyInstanceUID and SeriesInstanceUID of an Orthanc series id."""
    series: dict[str, Any] = client.get_json(f"/series/{orthanc_id}")
    study: dict[str, Any] = client.get_json(f"/studies/{series['ParentStudy']}")
    return SeriesRef(str(study["MainDicomTags"]["StudyInstanceUID"]),
                     str(series["MainDicomTags"]["SeriesInstanceUID"]))
