"""The weights registry: cards, sha256 verification, bundles, no torch at import."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest
import torch

from covidct.errors import ModelError
from covidct.models import create_model
from covidct.models.registry import (
    ModelSpec,
    default_weights_dir,
    find_spec,
    list_specs,
    load_bundle,
    load_model,
    read_card,
    save_model,
)


def _write_pair(folder: Path) -> tuple[ModelSpec, ModelSpec]:
    lung = save_model(create_model("unet_vgg11", width=0.0625),
                      ModelSpec(name="lung-tiny", task="lung", arch="unet_vgg11", width=0.0625),
                      folder)
    cls = save_model(create_model("resnet18", width=0.125),
                     ModelSpec(name="cls-tiny", task="classifier", arch="resnet18", width=0.125,
                               slice_threshold=0.4, case_threshold=0.1), folder)
    return lung, cls


def test_save_and_load_bundle(tmp_path: Path) -> None:
    lung, cls = _write_pair(tmp_path)
    assert read_card(tmp_path / "lung-tiny.json") == lung
    assert len(lung.sha256) == 64 and lung.weights_file == "lung-tiny.safetensors"
    bundle = load_bundle(tmp_path)
    assert bundle.classifier.spec.slice_threshold == 0.4
    assert bundle.checksums() == {"lung-tiny": lung.sha256, "cls-tiny": cls.sha256}
    assert not bundle.lung.module.training
    with torch.no_grad():
        assert bundle.lung.module(torch.rand(1, 1, 64, 64)).shape == (1, 3, 64, 64)


def test_spec_is_frozen() -> None:
    spec = ModelSpec(name="a", task="lung", arch="unet_vgg11")
    with pytest.raises(FrozenInstanceError):
        spec.name = "b"  # type: ignore[misc]


def test_corrupted_weights_raise(tmp_path: Path) -> None:
    lung, _ = _write_pair(tmp_path)
    path = tmp_path / lung.weights_file
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="corrupt"):
        load_model(lung, tmp_path)


def test_missing_weights_and_cards_raise(tmp_path: Path) -> None:
    lung, _ = _write_pair(tmp_path)
    (tmp_path / lung.weights_file).unlink()
    with pytest.raises(ModelError, match="missing"):
        load_model(lung, tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="No lung model"):
        find_spec("lung", tmp_path / "empty")
    with pytest.raises(ModelError, match="does not exist"):
        list_specs(tmp_path / "nowhere")


def test_wrong_architecture_in_card_raises(tmp_path: Path) -> None:
    lung, _ = _write_pair(tmp_path)
    wrong = ModelSpec(name="lung-tiny", task="lung", arch="unet_vgg16", width=0.0625,
                      weights_file=lung.weights_file, sha256=lung.sha256)
    with pytest.raises(ModelError, match="do not load"):
        load_model(wrong, tmp_path)


def test_shipped_bundle_loads() -> None:
    specs = list_specs()
    if not specs:
        pytest.skip("no shipped weights yet")
    bundle = load_bundle()
    assert bundle.lung.spec.task == "lung" and bundle.classifier.spec.task == "classifier"
    assert bundle.classifier.spec.slice_threshold is not None
    total = sum(p.stat().st_size for p in default_weights_dir().glob("*.safetensors"))
    assert total < 20e6


def test_registry_imports_without_torch() -> None:
    code = ("import sys, covidct.models.registry as r; r.list_specs; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
