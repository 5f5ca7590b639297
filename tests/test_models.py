"""Model definitions: torchvision parameter names and shapes, forward shapes, pretrained loading.

tests/data/torchvision_*_keys.json were generated from torchvision 0.28.0 (weights=None)
in a throwaway environment: `pip download torchvision==0.28.0 --no-deps`, the wheel on
PYTHONPATH, `torch.library.Library('torchvision', 'DEF')` defining `nms` and `qnms`, then
`{k: list(v.shape) for k, v in torchvision.models.NAME(weights=None).state_dict().items()}`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from covidct.errors import ModelError
from covidct.models import create_model
from covidct.models.pretrained import load_pretrained

DATA = Path(__file__).parent / "data"


def torchvision_keys(name: str) -> dict[str, list[int]]:
    return json.loads((DATA / f"torchvision_{name}_keys.json").read_text())["keys"]


def fake_checkpoint(name: str, path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint with torchvision's exact keys and shapes, random values."""
    gen = torch.Generator().manual_seed(0)
    state = {k: (torch.randn(shape, generator=gen) if shape else torch.tensor(0))
             for k, shape in torchvision_keys(name).items()}
    torch.save(state, path)
    return state


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50"])
def test_resnet_backbone_matches_torchvision(arch: str) -> None:
    ours = {k: list(v.shape) for k, v in create_model(arch).state_dict().items()}
    theirs = torchvision_keys(arch)
    backbone = {k: v for k, v in theirs.items() if not k.startswith("fc.")}
    ours_backbone = {k: v for k, v in ours.items() if not k.startswith("head.")}
    assert set(ours_backbone) == set(backbone)
    for key, shape in backbone.items():
        expected = [shape[0], 1, *shape[2:]] if key == "conv1.weight" else shape
        assert ours_backbone[key] == expected, key


@pytest.mark.parametrize("encoder", ["vgg11", "vgg16"])
def test_unet_encoder_matches_torchvision_features(encoder: str) -> None:
    ours = {k: list(v.shape) for k, v in create_model(f"unet_{encoder}").state_dict().items()
            if k.startswith("features.")}
    theirs = {k: v for k, v in torchvision_keys(encoder).items() if k.startswith("features.")}
    assert set(ours) == set(theirs)
    for key, shape in theirs.items():
        expected = [shape[0], 1, *shape[2:]] if key == "features.0.weight" else shape
        assert ours[key] == expected, key


def test_classifier_forward_and_stages() -> None:
    model = create_model("resnet18", width=0.25).eval()
    x = torch.rand(2, 1, 224, 224)
    feat28, feat14, logit = model.forward_stages(x)
    assert feat28.shape[-2:] == (28, 28) and feat14.shape[-2:] == (14, 14)
    assert logit.shape == (2,)
    torch.testing.assert_close(model(x), logit)
    grads = torch.autograd.grad(logit.sum(), (feat28, feat14))  # one graph, both gradients
    assert all(g.abs().sum() > 0 for g in grads)


def test_lung_unet_forward_shape() -> None:
    model = create_model("unet_vgg11", width=0.125).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 224, 224)).shape == (2, 3, 224, 224)


def test_pretrained_resnet_loads_and_sums_rgb(tmp_path: Path) -> None:
    state = fake_checkpoint("resnet18", tmp_path / "resnet18.pth")
    model = create_model("resnet18")
    head_before = model.head[0].weight.clone()
    loaded = load_pretrained(model, tmp_path / "resnet18.pth")
    assert "layer1.0.downsample.0.weight" not in loaded  # resnet18 layer1 has none
    assert "layer2.0.downsample.0.weight" in loaded
    torch.testing.assert_close(model.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    torch.testing.assert_close(model.head[0].weight, head_before)  # our head is ours


def test_pretrained_vgg_into_unet(tmp_path: Path) -> None:
    state = fake_checkpoint("vgg11", tmp_path / "vgg11.pth")
    model = create_model("unet_vgg11")
    load_pretrained(model, tmp_path / "vgg11.pth")
    torch.testing.assert_close(model.features[0].weight,
                               state["features.0.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(model.features[18].weight, state["features.18.weight"])


def test_pretrained_mismatch_is_a_model_error(tmp_path: Path) -> None:
    fake_checkpoint("resnet18", tmp_path / "resnet18.pth")
    with pytest.raises(ModelError, match="mismatched"):
        load_pretrained(create_model("resnet18", width=0.5), tmp_path / "resnet18.pth")
    with pytest.raises(ModelError, match="missing"):
        load_pretrained(create_model("resnet50"), tmp_path / "resnet18.pth")
    with pytest.raises(ModelError, match="does not exist"):
        load_pretrained(create_model("resnet18"), tmp_path / "nope.pth")


def test_unknown_architecture() -> None:
    with pytest.raises(ModelError, match="Unknown architecture"):
        create_model("resnet101")
