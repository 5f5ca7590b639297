"""Analysis configuration: one frozen dataclass, units in the field names.

Each field becomes a `covidct analyze` flag (``infection_sigma_mm`` -> ``--infection-sigma-mm``);
the resolved configuration is written into every result.json.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from covidct.errors import ConfigError

PRECISIONS = ("auto", "bf16", "fp32")
EXPLAIN = ("positive", "lung")
INFECTION_METHODS = ("hu", "heatmap")


@dataclass(frozen=True)
class AnalysisConfig:
    """Settings of the stages after the two models (and the models' numeric precision)."""

    slice_threshold: float | None = field(default=None, metadata={
        "help": "slice probability at or above which a slice is positive "
                "(default: the model card's)"})
    case_threshold: float | None = field(default=None, metadata={
        "help": "positive-slice ratio above which a case is suspected (default: the model card's)"})
    precision: str = field(default="auto", metadata={
        "help": "model arithmetic: bf16, fp32, or auto (bf16 where the CPU runs it natively)"})
    batch_size: int = field(default=32, metadata={
        "help": "slices per model batch (memory vs speed)"})
    explain: str = field(default="positive", metadata={
        "help": "slices Grad-CAM explains: positive (the ones the scores use; fastest) or lung"})
    infection_method: str = field(default="hu", metadata={
        "help": "where the infection mask and volumes come from: hu (GGO/consolidation from "
                "HU inside the lung, gated by the classifier; covidct.lesions) or heatmap "
                "(the thresholded Grad-CAM maps of Gozes et al. 2020)"})
    ggo_evidence_cm2: float = field(default=4.0, metadata={
        "help": "ground-glass area on a slice (cm2) at which the lesion measure's evidence "
                "reaches 0.63 in the slice probability (noisy-OR with the classifier; "
                "covidct.slice_evidence); 0: the classifier's probability alone, as in "
                "Gozes et al. 2020"})
    heatmap_threshold: float = field(default=0.05, metadata={
        "help": "fused Grad-CAM value (0-1) above which a lung voxel is a lesion candidate"})
    infection_sigma_mm: float = field(default=2.0, metadata={
        "help": "sigma in mm of the 3D Gaussian that smooths the thresholded maps"})
    infection_smooth_threshold: float = field(default=0.5, metadata={
        "help": "smoothed-mask value (0-1) above which a voxel is infected"})
    overlay_count: int = field(default=6, metadata={
        "help": "PNG overlays of the most affected slices"})
    render_voxel_mm: float = field(default=4.0, metadata={
        "help": "grid spacing in mm of the 3D surface render (coarser is faster)"})

    def __post_init__(self) -> None:
        self._check_types()
        for name in ("slice_threshold", "case_threshold"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1]; got {value}.")
        for name in ("heatmap_threshold", "infection_smooth_threshold"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1); got {getattr(self, name)}.")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}.")
        if self.explain not in EXPLAIN:
            raise ConfigError(
                f"explain must be one of {', '.join(EXPLAIN)}; got {self.explain!r}.")
        if self.infection_method not in INFECTION_METHODS:
            raise ConfigError(
                f"infection_method must be one of {', '.join(INFECTION_METHODS)}; "
                f"got {self.infection_method!r}.")
        if not (math.isfinite(self.ggo_evidence_cm2) and self.ggo_evidence_cm2 >= 0.0):
            raise ConfigError(f"ggo_evidence_cm2 must be a finite number >= 0 (0 turns it "
                              f"off); got {self.ggo_evidence_cm2}.")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1; got {self.batch_size}.")
        if self.infection_sigma_mm < 0:
            raise ConfigError(
                f"infection_sigma_mm must be >= 0 (0 disables smoothing); "
                f"got {self.infection_sigma_mm}.")
        if self.overlay_count < 0:
            raise ConfigError(f"overlay_count must be >= 0; got {self.overlay_count}.")
        if self.render_voxel_mm <= 0:
            raise ConfigError(f"render_voxel_mm must be > 0; got {self.render_voxel_mm}.")

    def _check_types(self) -> None:
        """Numbers where numbers belong (a dict from the Python API is not parsed)."""
        for f in fields(self):
            value = getattr(self, f.name)
            kind = str(f.type)
            if value is None and "None" in kind:
                continue
            if kind.startswith("float") and not (isinstance(value, int | float)
                                                 and not isinstance(value, bool)):
                raise ConfigError(f"{f.name} must be a number; got {value!r}.")
            if kind.startswith("int") and not (isinstance(value, int)
                                               and not isinstance(value, bool)):
                raise ConfigError(f"{f.name} must be a whole number; got {value!r}.")
            if kind.startswith("str") and not isinstance(value, str):
                raise ConfigError(f"{f.name} must be a string; got {value!r}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def field_help(cls) -> dict[str, str]:
        """Field name -> one-line help, for the CLI."""
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}
