"""The Python API: analyse a CT in memory, then save what you need.

    import covidct
    volume = covidct.load_volume("study/")           # DICOM folder/zip, NIfTI, NRRD, MHA
    result = covidct.analyze(volume)                 # or covidct.analyze("study/")
    result.metrics.corona_score_cm3, result.decision.label
    result.save("out/")                              # result.json, NIfTI, PNG, report, DICOM

``analyze`` writes no files; every array of the returned ``CaseResult`` is on the input's
canonical (z, y, x) grid (covidct.volume). The result.json document is described by the
JSON Schema ``covidct/resources/result.schema.json`` (``result_schema()``,
docs/result-schema.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import fields
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from covidct.config import AnalysisConfig
from covidct.errors import ConfigError, CovidCTError, InputError
from covidct.volume import Volume

if TYPE_CHECKING:  # pipeline imports torch; keep `import covidct` light
    from covidct.pipeline import CaseResult

SCHEMA_RESOURCE = "result.schema.json"


def load_volume(path: str | Path, series_uid: str | None = None) -> Volume:
    """A CT volume from a DICOM folder / file / .zip, or a NIfTI, NRRD or MHA/MHD file.

    Returns a Volume: ``hu`` (z, y, x) in Hounsfield units (z inferior->superior,
    y anterior->posterior, x right->left), ``affine`` voxel (k, j, i) -> LPS mm,
    ``spacing_mm`` (dz, dy, dx). For DICOM, the axial CT series with the most slices is
    chosen unless ``series_uid`` names one. Raises InputError (missing path, no CT,
    undecodable pixels, ...) and SeriesSelectionError (ambiguous series), with the fix.
    """
    from covidct.io import load_volume as _load

    return _load(path, series_uid=series_uid)


def _config(config: AnalysisConfig | Mapping[str, Any] | None) -> AnalysisConfig:
    if config is None:
        return AnalysisConfig()
    if isinstance(config, AnalysisConfig):
        return config
    if isinstance(config, Mapping):
        known = {f.name for f in fields(AnalysisConfig)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ConfigError(f"Unknown configuration key(s) {unknown}; known keys: "
                              f"{sorted(known)} (covidct.AnalysisConfig).")
        return AnalysisConfig(**config)
    raise ConfigError(f"config must be an AnalysisConfig, a dict or None; got "
                      f"{type(config).__name__}.")


def _bundle(models: Any) -> Any:
    if models is not None and hasattr(models, "lung") and hasattr(models, "classifier"):
        return models
    if models is None or isinstance(models, str | Path):
        from covidct.models.registry import load_bundle

        return load_bundle(models)
    raise ConfigError(
        f"models must be None (the shipped models), a folder of weights and model cards, or a "
        f"loaded bundle (covidct.models.registry.load_bundle); got {type(models).__name__}.")


def analyze(source: str | Path | Volume, models: Any = None,
            config: AnalysisConfig | Mapping[str, Any] | None = None, *,
            series_uid: str | None = None,
            progress: Callable[[str], None] | None = None) -> CaseResult:
    """Analyse one chest CT (Gozes et al. 2020); writes nothing.

    source: a path (as ``load_volume``) or a Volume. models: None for the shipped weights,
    a folder of ``*.safetensors`` + model cards, or a loaded ModelBundle (reuse one for
    many cases). config: an AnalysisConfig, a dict of its fields (e.g.
    ``{"slice_threshold": 0.4}``) or None for the defaults. progress: called with each
    stage's name.

    Returns the CaseResult: ``decision`` (label, positive_slice_ratio, threshold),
    ``metrics`` (corona_score_cm3, volumes in cm3, % involvement, zones, severity 0-24),
    and on the volume's (z, y, x) grid ``lung_mask`` (uint8, 1 right, 2 left),
    ``airway_mask`` (bool), ``infection_mask`` (uint8 0/1), ``heatmap`` (float32 0-1);
    per slice (z,) ``prob``, ``has_lung``, ``positive``. ``result.save(out_dir)`` writes
    the files. Raises InputError (unreadable input, not HU), ConfigError (bad settings),
    ModelError (missing or corrupt weights).
    """
    from covidct.pipeline import analyze as _analyze

    if isinstance(source, Volume):
        volume = source
    elif isinstance(source, str | Path):
        volume = load_volume(source, series_uid=series_uid)
    else:
        raise InputError(f"analyze() takes a path or a covidct.Volume; got "
                         f"{type(source).__name__}. Wrap an array with Volume.from_spacing(hu, "
                         "spacing_mm) or Volume(hu, affine).")
    return _analyze(volume, _config(config), _bundle(models), progress=progress)


def save_result(result: CaseResult, out_dir: str | Path, *, report: bool = True,
                dicom_out: bool | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Write the outputs of ``result`` into ``out_dir`` and return the result.json document.

    Files: result.json, lung/airway/infection masks and heatmap (.nii.gz), PNG overlays,
    3D render, slice profile, report.html (unless report=False), and for a DICOM input
    seg.dcm, sr.dcm and sc/ (dicom_out None: when possible; True: required; False: never;
    the source series is read again from its path). Raises InputError when out_dir is a
    non-empty folder and overwrite is False, overlaps the input, cannot be created, or
    dicom_out=True for a non-DICOM input.
    """
    from covidct.export.dicom_objects import dicom_sources_with_reason
    from covidct.export.outputs import write_outputs
    from covidct.io.output_folder import check_output_folder

    out = Path(out_dir)
    source = result.volume.metadata.get("source_path")
    check_output_folder(Path(source) if source else None, out, overwrite,
                        overwrite_hint="overwrite=True")
    sources, skipped = dicom_sources_with_reason(result.volume, dicom_out)
    return write_outputs(result, out, report=report, dicom_sources=sources,
                         dicom_required=bool(dicom_out), dicom_skipped=skipped)


def result_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of result.json, as a dict."""
    text = resources.files("covidct").joinpath("resources", SCHEMA_RESOURCE).read_text("utf-8")
    return json.loads(text)


def validate_result(doc: Mapping[str, Any]) -> None:
    """Raise CovidCTError naming every place where ``doc`` breaks the result.json schema."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(result_schema())
    problems = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if problems:
        listed = "; ".join(f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
                           for e in problems[:10])
        raise CovidCTError(f"The document does not follow the result.json schema "
                           f"(schema_version {doc.get('schema_version')!r}): {listed}.")
