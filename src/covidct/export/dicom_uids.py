"""Deterministic UIDs of the DICOM objects covidct derives from one source series.

Every UID is ``2.25.<integer>`` (ISO/IEC 9834-8, the UUID-derived root that needs no
registered prefix) made by ``pydicom.uid.generate_uid(prefix=None, entropy_srcs=...)``
from the SHA-512 of: the source SeriesInstanceUID, the covidct version, the sha256 of
every model (sorted by role), and the object's role ("seg series", "sc instance <SOP UID>",
...). Re-running the same version with the same models on the same series gives the same
UIDs, so a PACS that receives the objects again replaces them instead of duplicating them;
a new version or new weights give new UIDs (a different result is a different object).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydicom.uid import generate_uid

from covidct.errors import InputError


@dataclass(frozen=True)
class OutputUIDs:
    """A UID factory for one (source series, covidct version, models) triple."""

    source_series_uid: str
    covidct_version: str
    model_sha256s: tuple[tuple[str, str], ...]  # (role, sha256) sorted by role

    @classmethod
    def for_result(cls, series_uid: str | None, covidct_version: str,
                   models: Mapping[str, Mapping[str, Any]]) -> OutputUIDs:
        """From CaseResult.models ({"lung": {"sha256": ...}, "classifier": {...}})."""
        if not series_uid:
            raise InputError(
                "DICOM outputs need the source SeriesInstanceUID to derive their UIDs, and the "
                "volume has none. Analyse a DICOM series (not a NIfTI/NRRD file) to get "
                "DICOM outputs.")
        shas = tuple(sorted((str(role), str(info.get("sha256") or ""))
                            for role, info in models.items()))
        return cls(str(series_uid), str(covidct_version), shas)

    def uid(self, role: str) -> str:
        """The UID of one output ("seg series", "seg instance", "sc instance <SOP UID>")."""
        parts = ["covidct", self.source_series_uid, self.covidct_version,
                 *(f"{r}={s}" for r, s in self.model_sha256s), role]
        return str(generate_uid(prefix=None, entropy_srcs=parts))
