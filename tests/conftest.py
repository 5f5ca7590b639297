"""Shared fixtures. Keep small; module-specific helpers live in their test files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from covidct.volume import Volume


def _real_data_dir() -> Path:
    """$COVIDCT_REAL_DATA, else ../shared/data/real beside the checkout, else /work/shared."""
    env = os.environ.get("COVIDCT_REAL_DATA")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[2] / "shared" / "data" / "real",
                   Path("/work/shared/data/real")]
    return next((c for c in candidates if c.is_dir()), candidates[0])


REAL_DATA = _real_data_dir()


@pytest.fixture(scope="session")
def real_data() -> Path:
    """/work/shared/data/real (skips when the public fixtures are not on this machine)."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real CT fixtures not found at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture()
def small_ct() -> Volume:
    """A 12x40x48 int16 volume with known, distinct values per voxel and an odd geometry."""
    rng = np.random.default_rng(0)
    hu = rng.integers(-1000, 1500, size=(12, 40, 48)).astype(np.int16)
    return Volume.from_spacing(hu, (2.5, 0.7, 0.8), (-10.0, -20.0, -30.0))
