"""Short form of benchmarks/fuzz_readers.py: mutated real files end in a Volume or a
CovidCTError, never another exception or a hang (the long form's counts are in
benchmarks/results/fuzz_readers.txt)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from conftest import REAL_DATA

HARNESS = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz_readers.py"


@pytest.fixture(scope="module")
def harness():
    if not (REAL_DATA / "cip-copdgene-10002K").is_dir():
        pytest.skip("real CT fixtures not found")
    spec = importlib.util.spec_from_file_location("fuzz_readers", HARNESS)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_readers"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("reader", ["dicom", "nifti", "nrrd"])
def test_mutated_real_files_end_in_a_volume_or_a_covidct_error(harness, reader) -> None:
    tally = harness.fuzz((reader,), examples=120, timeout_s=10.0, seed=0)
    assert tally.cases[reader] == 120
    assert tally.crashes == {}, {k: v["message"] for k, v in tally.crashes.items()}
    assert tally.outcomes["volume"] > 0 and tally.outcomes["error"] > 0  # both paths run


def test_mutations_change_the_bytes(harness) -> None:
    data = bytes(range(256)) * 4
    assert harness.mutate(data, [("flip", 3, 0)])[3] == data[3] ^ 1
    assert len(harness.mutate(data, [("truncate", 10)])) == 10
    assert harness.mutate(data, [("int", 0, 4, -1, False)])[:4] == b"\xff\xff\xff\xff"
    nrrd = b"NRRD0004\nsizes: 2 2 2\nencoding: raw\n\n" + bytes(8)
    assert b"sizes: nan" in harness.mutate(nrrd, [("token", 1, b"nan")])


def test_random_engine_draws_from_the_same_space(harness) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    kinds = {op[0] for _ in range(200) for op in harness.random_ops(rng)}
    assert kinds == {"flip", "set", "int", "insert", "delete", "dup", "truncate", "token"}
    tally = harness.fuzz(("nifti",), examples=40, seed=1, engine="random")
    assert tally.cases["nifti"] == 40 and tally.crashes == {}
