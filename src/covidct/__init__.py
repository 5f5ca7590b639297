"""covidct: COVID-19 pneumonia analysis of chest CT (Gozes et al. 2020, RADLogics method).

Python API (covidct.api): ``load_volume(path)``, ``analyze(path_or_volume, models=...,
config=...)`` -> ``CaseResult`` (no files written), ``result.save(out_dir)``,
``result_schema()`` / ``validate_result(doc)`` for result.json. The heavy modules (torch)
are imported on first use, not by ``import covidct``.
"""

from typing import Any

from covidct.errors import CovidCTError, InputError
from covidct.volume import Volume

__all__ = ["AnalysisConfig", "CaseResult", "CovidCTError", "InputError", "Volume",
           "__version__", "analyze", "load_volume", "result_schema", "save_result",
           "validate_result"]
__version__ = "0.1.0"

_API = {"analyze", "load_volume", "save_result", "result_schema", "validate_result"}


def __getattr__(name: str) -> Any:
    if name in _API:
        from covidct import api

        return getattr(api, name)
    if name == "AnalysisConfig":
        from covidct.config import AnalysisConfig

        return AnalysisConfig
    if name == "CaseResult":
        from covidct.pipeline import CaseResult

        return CaseResult
    raise AttributeError(f"module 'covidct' has no attribute {name!r}")
