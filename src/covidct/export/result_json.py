"""result.json: the machine-readable record of one analysis (schema_version 1)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from covidct import __version__
from covidct.pipeline import CaseResult

SCHEMA_VERSION = 1
DECISION_FIELDS = ("label", "positive_slice_ratio", "threshold", "lung_slices",
                   "positive_slices", "reason")


def _plain(value: Any) -> Any:
    """JSON-safe copy: numpy scalars/arrays to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def _decision_dict(decision: Any) -> dict[str, Any]:
    raw = asdict(decision) if is_dataclass(decision) else dict(vars(decision))
    out = {name: raw.get(name) for name in DECISION_FIELDS}
    out.update({k: v for k, v in raw.items() if k not in out})
    return out


def _input_dict(result: CaseResult) -> dict[str, Any]:
    volume = result.volume
    meta = dict(volume.metadata)
    keep = ("format", "series_description", "study_date", "patient_id", "manufacturer",
            "model", "slice_thickness_mm", "kernel")
    return {
        "path": meta.get("source_path"),
        "series_uid": meta.get("series_uid"),
        "shape": list(volume.shape),
        "spacing_mm": [round(s, 6) for s in volume.spacing_mm],
        "affine_lps": volume.affine.tolist(),
        **{k: meta.get(k) for k in keep},
    }


DENSITY_DEFINITIONS = {
    "parenchyma": "lung mask minus vessels, airway walls and airways (covidct.lesions)",
    "percent_opacity": "PO: 100 x lesion (GGO + consolidation) volume / parenchyma volume",
    "percent_high_opacity": "PHO: 100 x volume of lesion voxels above -200 HU / parenchyma "
                            "volume",
    "mean_lung_hu": "mean HU of the parenchyma (lightly smoothed)",
}


def _density_dict(density: Any) -> dict[str, Any] | None:
    if density is None:
        return None
    return {"parenchyma_cm3": round(density.parenchyma_cm3, 3),
            "percent_opacity": round(density.percent_opacity, 3),
            "percent_high_opacity": round(density.percent_high_opacity, 3),
            "mean_lung_hu": round(density.mean_lung_hu, 1),
            "definitions": DENSITY_DEFINITIONS}


def _slice_value(values: Any, k: int, has_lung: Any, digits: int) -> float | None:
    if values is None or not has_lung[k]:
        return None
    return round(float(values[k]), digits)


def build_result(result: CaseResult, outputs: dict[str, str],
                 timings_s: dict[str, float]) -> dict[str, Any]:
    """The result.json document of one analysis (a plain dict)."""
    m = result.metrics
    z_mm = result.volume.slice_positions_mm()
    slices = [
        {"index": int(k), "z_mm": round(float(z_mm[k]), 3), "has_lung": bool(result.has_lung[k]),
         "probability": round(float(result.prob[k]), 5) if result.has_lung[k] else None,
         "positive": bool(result.positive[k]),
         "classifier_probability": _slice_value(result.classifier_prob, k, result.has_lung, 5),
         "ggo_area_cm2": _slice_value(result.ggo_area_cm2, k, result.has_lung, 3)}
        for k in range(result.volume.shape[0])
    ]
    doc = {
        "schema_version": SCHEMA_VERSION,
        "covidct_version": __version__,
        "input": _input_dict(result),
        "decision": _decision_dict(result.decision),
        "corona_score_cm3": round(m.corona_score_cm3, 3),
        "lung": {"volume_cm3": round(m.lung_volume_cm3, 3), "right_cm3": round(m.right_cm3, 3),
                 "left_cm3": round(m.left_cm3, 3),
                 "extent_mm": (round(result.coverage.lung_extent_mm, 1)
                               if result.coverage is not None else None),
                 "airway_cm3": round(float(np.count_nonzero(result.airway_mask))
                                     * result.volume.voxel_volume_mm3 / 1000.0, 3)},
        "infection": {
            "volume_cm3": round(m.infection_volume_cm3, 3),
            "percent_of_lung": round(m.percent_of_lung, 3),
            "right_percent": round(m.right_percent, 3),
            "left_percent": round(m.left_percent, 3),
            "zones": [{k: (round(v, 3) if isinstance(v, float) else v)
                       for k, v in asdict(z).items()} for z in m.zones],
            "severity_score": m.severity_score,  # the zone-based score, 0-24
            "method": result.config.infection_method,
            **({} if result.lesion_labels is None else {  # no split of a heatmap mask
                "ggo_volume_cm3": round(m.ggo_volume_cm3, 3),
                "consolidation_volume_cm3": round(m.consolidation_volume_cm3, 3)}),
            "halves": [{k: (round(v, 3) if isinstance(v, float) else v)
                        for k, v in asdict(h).items()} for h in m.halves],
        },
        "density": _density_dict(m.density),
        "slices": slices,
        "outputs": outputs,
        "timings_s": timings_s,
        "models": result.models,
        "config": result.config.to_dict(),
        "warnings": list(result.warnings),
        "disclaimer": "Research software, not a medical device.",
    }
    return _plain(doc)


def write_result_json(doc: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def read_result_json(path: Path) -> dict[str, Any]:
    """A result.json (or the result.json inside an output folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / "result.json"
    return json.loads(path.read_text(encoding="utf-8"))
