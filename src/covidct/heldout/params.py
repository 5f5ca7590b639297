"""What a held-out case is: the caller's choices (HeldoutParams) and what a seed resolves.

The ranges here are deliberately *not* those of the training family (`covidct.synth`):
bigger and smaller bodies, arms down beside the chest, other diaphragm heights and lung
proportions, contrast-enhanced or plain vessels, thicker slices and coarser pixels, and a
lower dose.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from covidct.errors import ConfigError

Range = tuple[float, float]

# Non-COVID findings a negative case carries (several may be combined).
CONFOUNDERS = ("dependent", "atelectasis", "effusion", "nodules", "emphysema", "fibrosis")
KERNELS = ("smooth", "medium", "edge")


@dataclass(frozen=True)
class HeldoutParams:
    """What to generate; ``None`` = drawn from the seed, a (low, high) tuple = drawn in it.

    matrix: in-plane size (square, pixels). slice_mm: slice thickness = spacing (default
    2.5-5). covid: True / False / None (drawn with covid_fraction). severity: involved
    lung fraction of a COVID case (default 0.5 %-45 %, log-uniform). confounders: the
    non-COVID findings to draw (default: one or two for a negative, sometimes dependent
    density or emphysema for a COVID case); names from CONFOUNDERS. noise_hu: noise SD
    in HU at the chest centre (default 18-55). kernel: 'smooth', 'medium' or 'edge'.
    """

    matrix: int = 256
    slice_mm: float | Range | None = None
    covid: bool | None = None
    covid_fraction: float = 0.5
    severity: float | Range | None = None
    confounders: tuple[str, ...] | None = None
    noise_hu: float | Range | None = None
    kernel: str | None = None

    def __post_init__(self) -> None:
        if not 48 <= self.matrix <= 768:
            raise ConfigError(f"matrix must be 48..768 pixels; got {self.matrix}.")
        if not 0.0 <= self.covid_fraction <= 1.0:
            raise ConfigError(f"covid_fraction must be in [0, 1]; got {self.covid_fraction}.")
        if self.kernel is not None and self.kernel not in KERNELS:
            raise ConfigError(f"kernel must be one of {KERNELS}; got {self.kernel!r}.")
        if self.confounders is not None:
            unknown = set(self.confounders) - set(CONFOUNDERS)
            if unknown:
                raise ConfigError(f"Unknown confounders {sorted(unknown)}; known: "
                                  f"{', '.join(CONFOUNDERS)}.")
        for name in ("slice_mm", "noise_hu"):
            value = getattr(self, name)
            values = value if isinstance(value, tuple) else (value,)
            if any(v is not None and v <= 0 for v in values):
                raise ConfigError(f"{name} must be positive; got {value}.")
        severity = self.severity
        values = severity if isinstance(severity, tuple) else (severity,)
        if any(v is not None and not 0.0 < v < 0.9 for v in values):
            raise ConfigError(f"severity is the involved lung fraction, in (0, 0.9); got "
                              f"{severity}.")


@dataclass(frozen=True)
class Resolved:
    """Every value of one case (mm, HU); goes into truth.json under 'params'."""

    seed: int
    matrix: int
    slice_mm: float
    covid: bool
    severity: float
    confounders: tuple[str, ...]
    noise_hu: float
    kernel: str
    body_half_width_mm: float  # muscle outline, without fat
    body_ap_ratio: float  # antero-posterior / lateral half axes
    fat_mm: float
    superellipse_n: float  # body outline exponent (2 = ellipse)
    arms_down: bool
    lung_height_mm: float  # apex to the dome tops
    right_dome_rise_mm: float  # right hemidiaphragm above the left
    mediastinum_half_mm: float
    contrast: bool
    lung_hu: float  # parenchyma at the ventral surface
    gravity_hu: float  # added ventral -> dorsal
    dose_streaks: float  # 0 none .. 1 strong
    cupping_hu: float
    hu_offset: float

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def _draw(rng: np.random.Generator, value: float | Range | None, low: float, high: float,
          log: bool = False) -> float:
    if value is not None and not isinstance(value, tuple):
        return float(value)
    lo, hi = value if isinstance(value, tuple) else (low, high)
    if log:
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    return float(rng.uniform(lo, hi))


def resolve(seed: int, p: HeldoutParams) -> Resolved:
    """Draw every unset value of `p` from `seed` (the same seed, the same case)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 11]))
    covid = bool(rng.random() < p.covid_fraction) if p.covid is None else bool(p.covid)
    severity = _draw(rng, p.severity, 0.005, 0.45, log=True)
    if p.confounders is not None:
        confounders = tuple(p.confounders)
    elif covid:
        confounders = tuple(c for c, q in (("dependent", 0.4), ("emphysema", 0.15))
                            if rng.random() < q)
    else:
        first = str(rng.choice(CONFOUNDERS))
        extra = [c for c in CONFOUNDERS if c != first and rng.random() < 0.15]
        confounders = (first, *extra)
    width = float(rng.uniform(118.0, 190.0))  # training family: ~135-165 x its scale
    return Resolved(
        seed=int(seed), matrix=p.matrix,
        slice_mm=_draw(rng, p.slice_mm, 2.5, 5.0),
        covid=covid, severity=severity if covid else 0.0, confounders=confounders,
        noise_hu=_draw(rng, p.noise_hu, 18.0, 55.0),
        kernel=p.kernel or str(rng.choice(KERNELS)),
        body_half_width_mm=width,
        body_ap_ratio=float(rng.uniform(0.58, 0.80)),
        fat_mm=float(rng.uniform(6.0, 45.0)),
        superellipse_n=float(rng.uniform(2.1, 2.9)),
        arms_down=bool(rng.random() < 0.6),
        lung_height_mm=float(rng.uniform(185.0, 270.0)),
        right_dome_rise_mm=float(rng.uniform(5.0, 35.0)),
        mediastinum_half_mm=float(rng.uniform(0.17, 0.27) * width),
        contrast=bool(rng.random() < 0.5),
        lung_hu=float(rng.uniform(-900.0, -840.0)),
        gravity_hu=float(rng.uniform(20.0, 70.0)),
        dose_streaks=float(rng.uniform(0.0, 1.0)),
        cupping_hu=float(rng.uniform(0.0, 25.0)),
        hu_offset=float(rng.uniform(-12.0, 12.0)),
    )
