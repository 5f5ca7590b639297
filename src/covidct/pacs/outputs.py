"""The analysis the worker runs on one retrieved series: covidct analyze with DICOM outputs.

``OutputProducer(models_dir, config)(series_dir, out_dir)`` reads the series written in
``series_dir``, runs the analysis (Gozes et al. 2020 pipeline, ``covidct.pipeline``), writes
result.json in ``out_dir`` and the DICOM SEG, SR and secondary captures in ``out_dir/dicom``
(``covidct.export.dicom_objects``), and returns the DICOM paths. The models are loaded once
per producer, not once per series.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from covidct.config import AnalysisConfig

log = logging.getLogger(__name__)
# the roles covidct.export (dicom_seg, dicom_sr, dicom_sc) derive its series UIDs from
SERIES_ROLES = {"SEG": "seg series", "SR": "sr series", "SC": "sc series"}


class OutputProducer:
    """Analyses one DICOM series folder and writes its DICOM outputs (models loaded lazily)."""

    def __init__(self, models_dir: Path | None = None,
                 config: AnalysisConfig | None = None) -> None:
        self.models_dir = models_dir
        self.config = config or AnalysisConfig()
        self._bundle: Any = None

    def _models(self) -> Any:
        if self._bundle is None:
            from covidct.models.registry import load_bundle

            self._bundle = load_bundle(self.models_dir)
        return self._bundle

    def expected_series_uids(self, source_series_uid: str) -> dict[str, str]:
        """The SeriesInstanceUIDs this producer's SEG, SR and SC of ``source_series_uid``
        get (deterministic per source series, covidct version, model sha256s and settings,
        covidct.export.dicom_uids): how the worker finds outputs already in the PACS."""
        from covidct import __version__
        from covidct.export.dicom_uids import OutputUIDs
        from covidct.pipeline import resolve_config

        bundle = self._models()
        models = {"lung": {"sha256": bundle.lung.sha256},
                  "classifier": {"sha256": bundle.classifier.sha256}}
        settings = resolve_config(self.config, bundle).to_dict()  # as analyze() runs it
        uids = OutputUIDs.for_result(source_series_uid, __version__, models, settings)
        return {kind: uids.uid(role) for kind, role in SERIES_ROLES.items()}

    def __call__(self, series_dir: Path, out_dir: Path) -> list[Path]:
        """Analyse the series in ``series_dir``; returns the DICOM output paths (SEG, SR, SC).

        Raises InputError (and other CovidCTError) when the series cannot be analysed."""
        from covidct.export.dicom_objects import write_dicom_outputs
        from covidct.export.result_json import build_result, write_result_json
        from covidct.hu_units import require_hounsfield
        from covidct.io import load_volume
        from covidct.io.dicom_source import read_source_datasets
        from covidct.pipeline import analyze

        volume = load_volume(series_dir)
        require_hounsfield(volume)
        result = analyze(volume, self.config, self._models())
        out_dir.mkdir(parents=True, exist_ok=True)
        doc = build_result(result, {"result_json": "result.json"}, dict(result.timings_s))
        write_result_json(doc, out_dir / "result.json")
        log.info("analysed %s: %s", series_dir, doc["decision"]["label"])
        return write_dicom_outputs(result, read_source_datasets(series_dir), out_dir / "dicom",
                                   doc)
