"""Deterministic UIDs of the DICOM objects covidct derives from one source series.

Every UID is ``2.25.<integer>`` (ISO/IEC 9834-8 / DICOM PS3.5 B.2: a UUID as an
integer, no registered prefix needed); the UUID is the name-based version-5 UUID (RFC 4122,
SHA-1, namespace OID) of the text "covidct|<source SeriesInstanceUID>|<covidct
version>|<role>=<sha256> of every model, sorted by role|<name>=<value> of every analysis
setting (covidct.config.AnalysisConfig as the analysis ran it), sorted|<the object's
role>" (roles:
"seg series", "seg instance", "sr series", "sr instance", "sc series",
"sc instance <source SOP Instance UID>", "sr tracking <group>", "device observer").
(``pydicom.uid.generate_uid(prefix=None, ...)`` ignores its entropy sources and returns a
random UUID, so it cannot be used here.)

Re-running the same version with the same models and settings on the same series gives the
same UIDs, so a PACS that receives the objects again replaces them instead of duplicating
them; a new version, new weights or other settings (e.g. --infection-method heatmap) give
new UIDs (a different result is a different object).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from covidct.errors import InputError


@dataclass(frozen=True)
class OutputUIDs:
    """A UID factory for one (source series, covidct version, models) triple."""

    source_series_uid: str
    covidct_version: str
    model_sha256s: tuple[tuple[str, str], ...]  # (role, sha256) sorted by role
    settings: tuple[str, ...] = ()  # "name=value" sorted by name

    @classmethod
    def for_result(cls, series_uid: str | None, covidct_version: str,
                   models: Mapping[str, Mapping[str, Any]],
                   settings: Mapping[str, Any] | None = None) -> OutputUIDs:
        """From CaseResult.models ({"lung": {"sha256": ...}, "classifier": {...}}) and the
        analysis settings (CaseResult.config.to_dict(), or pipeline.resolve_config's)."""
        if not series_uid:
            raise InputError(
                "DICOM outputs need the source SeriesInstanceUID to derive their UIDs, and the "
                "volume has none. Analyse a DICOM series (not a NIfTI/NRRD file) to get "
                "DICOM outputs.")
        shas = tuple(sorted((str(role), str(info.get("sha256") or ""))
                            for role, info in models.items()))
        named = tuple(sorted(f"{k}={v!r}" for k, v in (settings or {}).items()))
        return cls(str(series_uid), str(covidct_version), shas, named)

    def uid(self, role: str) -> str:
        """The UID of one output ("seg series", "seg instance", "sc instance <SOP UID>")."""
        parts = ["covidct", self.source_series_uid, self.covidct_version,
                 *(f"{r}={s}" for r, s in self.model_sha256s), *self.settings, role]
        return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, '|'.join(parts)).int}"
