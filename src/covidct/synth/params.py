"""Generation parameters: what the caller fixes (SynthParams) and what a seed resolves.

Every ``None`` (or a ``(low, high)`` range) in SynthParams is drawn from the case seed,
so one integer reproduces a case exactly; the resolved values go into the truth.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from covidct.errors import ConfigError

Range = tuple[float, float]
KERNELS = ("soft", "standard", "sharp")
FINDINGS = ("nodule", "emphysema", "effusion", "atelectasis")

# Fine generation step along z: thick slices are averaged from sub-slices this thin or thinner.
FINE_Z_MM = 1.25
# Half-width of an average adult chest without subcutaneous fat (muscle outline).
NOMINAL_HALF_WIDTH_MM = 150.0


@dataclass(frozen=True)
class SynthParams:
    """What to generate. ``None`` = drawn from the seed; a (low, high) tuple = drawn in that range.

    matrix: in-plane size (square). pixel_mm: in-plane spacing (default 0.55-0.9, chosen so
    the patient fits the field of view). slice_mm: slice thickness = spacing (default 1-5).
    n_slices / z_extent_mm: the scan length (default: from above the apices to the upper
    abdomen, ~260-370 mm).
    covid: True / False / None (drawn with covid_fraction). severity: fraction of the lung
    involved for COVID cases (default 0.15% to 65%, log-uniform). noise_hu: noise SD in HU
    at the output slice thickness. patient_scale: in-plane body size factor (1 = average
    adult). fat_mm: subcutaneous fat thickness. findings: allow non-COVID findings
    (nodule, emphysema, effusion, atelectasis); finding_list forces a set of them.
    kernel: reconstruction kernel ('soft', 'standard', 'sharp'). fov_circle: pixels
    outside the reconstruction circle set to -1024, as many scanners write them.
    """

    matrix: int = 512
    pixel_mm: float | Range | None = None
    slice_mm: float | Range | None = None
    n_slices: int | None = None
    z_extent_mm: float | Range | None = None
    covid: bool | None = None
    covid_fraction: float = 0.5
    severity: float | Range | None = None
    noise_hu: float | Range | None = None
    patient_scale: float | Range | None = None
    fat_mm: float | Range | None = None
    findings: bool = True
    finding_list: tuple[str, ...] | None = None
    kernel: str | None = None
    fov_circle: bool | None = None

    def __post_init__(self) -> None:
        if not 16 <= self.matrix <= 1024:
            raise ConfigError(f"matrix must be 16..1024 pixels; got {self.matrix}.")
        if not 0.0 <= self.covid_fraction <= 1.0:
            raise ConfigError(f"covid_fraction must be in [0, 1]; got {self.covid_fraction}.")
        if self.kernel is not None and self.kernel not in KERNELS:
            raise ConfigError(f"kernel must be one of {KERNELS}; got {self.kernel!r}.")
        if self.finding_list is not None:
            unknown = set(self.finding_list) - set(FINDINGS)
            if unknown:
                raise ConfigError(f"Unknown findings {sorted(unknown)}; known: {FINDINGS}.")
        for name in ("pixel_mm", "slice_mm", "z_extent_mm", "noise_hu", "patient_scale"):
            value = getattr(self, name)
            values = value if isinstance(value, tuple) else (value,)
            if any(v is not None and v <= 0 for v in values):
                raise ConfigError(f"{name} must be positive; got {value}.")
        if self.n_slices is not None and self.n_slices < 1:
            raise ConfigError(f"n_slices must be >= 1; got {self.n_slices}.")


@dataclass(frozen=True)
class ResolvedParams:
    """Every generation parameter of one case, concrete."""

    seed: int
    matrix: int
    pixel_mm: float
    slice_mm: float
    n_slices: int
    fine_per_slice: int
    covid: bool
    severity: float
    noise_hu: float
    patient_scale: float
    height_scale: float
    fat_mm: float
    kernel: str
    fov_circle: bool
    findings: tuple[str, ...]
    inspiration: float
    body_shift_mm: tuple[float, float]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["findings"] = list(self.findings)
        out["body_shift_mm"] = list(self.body_shift_mm)
        return out


def _draw(rng: np.random.Generator, value: float | Range | None, default: Range,
          log: bool = False) -> float:
    if value is not None and not isinstance(value, tuple):
        return float(value)
    low, high = value if value is not None else default
    if log:
        return float(np.exp(rng.uniform(np.log(low), np.log(high))))
    return float(rng.uniform(low, high))


def resolve_params(seed: int, params: SynthParams) -> ResolvedParams:
    """Draw every free parameter from the seed (one stream, fixed draw order)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    covid_draw = rng.random()
    covid = params.covid if params.covid is not None else bool(covid_draw < params.covid_fraction)
    severity = _draw(rng, params.severity, (0.0015, 0.65), log=True)
    patient_scale = _draw(rng, params.patient_scale, (0.86, 1.12))
    height_scale = float(rng.uniform(0.9, 1.08))
    fat_mm = _draw(rng, params.fat_mm, (4.0, 38.0))
    body_width_mm = 2 * (NOMINAL_HALF_WIDTH_MM * patient_scale + fat_mm)
    fov_ratio = float(rng.uniform(1.06, 1.35))
    if params.pixel_mm is None:
        pixel_mm = float(np.clip(body_width_mm * fov_ratio / params.matrix, 0.55, 0.9))
        if params.matrix != 512:  # small test matrices: keep the field of view, not the pixel
            pixel_mm = body_width_mm * fov_ratio / params.matrix
    else:
        pixel_mm = _draw(rng, params.pixel_mm, (0.55, 0.9))
    fov_mm = pixel_mm * params.matrix
    if body_width_mm > 0.96 * fov_mm:  # shrink the patient to fit the field of view
        patient_scale *= 0.96 * fov_mm / body_width_mm
        fat_mm *= 0.96 * fov_mm / body_width_mm
    slice_mm = _draw(rng, params.slice_mm, (1.0, 5.0))
    slice_mm = round(slice_mm * 8) / 8 if params.slice_mm is None else slice_mm
    inspiration = float(rng.uniform(0.9, 1.05))
    # default scan: from ~2 cm above the apices to the upper abdomen
    extent = _draw(rng, params.z_extent_mm, (305.0, 350.0))
    if not isinstance(params.z_extent_mm, float | int):
        extent *= height_scale * inspiration
    n_slices = params.n_slices or max(1, int(round(extent / slice_mm)))
    fine = max(1, int(np.ceil(slice_mm / FINE_Z_MM - 1e-6)))
    noise_hu = _draw(rng, params.noise_hu, (12.0, 40.0)) * float(np.sqrt(2.5 / slice_mm))
    if params.noise_hu is not None and not isinstance(params.noise_hu, tuple):
        noise_hu = float(params.noise_hu)
    kernel = params.kernel or str(rng.choice(KERNELS, p=[0.3, 0.5, 0.2]))
    fov_circle_draw = rng.random() < 0.5
    fov_circle = params.fov_circle if params.fov_circle is not None else bool(fov_circle_draw)
    findings = _draw_findings(rng, params, covid)
    shift = (float(rng.uniform(-12, 12)), float(rng.uniform(-15, 10)))
    return ResolvedParams(
        seed=int(seed), matrix=params.matrix, pixel_mm=round(pixel_mm, 4),
        slice_mm=float(slice_mm), n_slices=int(n_slices), fine_per_slice=fine, covid=covid,
        severity=severity if covid else 0.0, noise_hu=round(noise_hu, 2),
        patient_scale=patient_scale, height_scale=height_scale, fat_mm=fat_mm, kernel=kernel,
        fov_circle=fov_circle, findings=findings, inspiration=inspiration, body_shift_mm=shift,
    )


def _draw_findings(rng: np.random.Generator, params: SynthParams, covid: bool) -> tuple[str, ...]:
    draws = rng.random(len(FINDINGS))
    if params.finding_list is not None:
        return tuple(f for f in FINDINGS if f in params.finding_list)
    if not params.findings:
        return ()
    # Negatives carry confounders often; COVID cases sometimes (emphysema + COVID is real).
    chance = (0.35, 0.25, 0.2, 0.3) if not covid else (0.1, 0.1, 0.08, 0.1)
    return tuple(f for f, d, c in zip(FINDINGS, draws, chance, strict=True) if d < c)
