"""Build a network by architecture name: the one place that maps names to builders."""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

from torch import nn

from covidct.errors import ModelError
from covidct.models.resnet import resnet18, resnet34, resnet50
from covidct.models.unet import unet_vgg11, unet_vgg16

ARCHITECTURES: MappingProxyType[str, tuple[str, Callable[..., nn.Module]]] = MappingProxyType({
    "resnet18": ("classifier", resnet18),
    "resnet34": ("classifier", resnet34),
    "resnet50": ("classifier", resnet50),
    "unet_vgg11": ("lung", unet_vgg11),
    "unet_vgg16": ("lung", unet_vgg16),
})


def task_of(arch: str) -> str:
    """'lung' or 'classifier' for an architecture name."""
    return _lookup(arch)[0]


def create_model(arch: str, width: float = 1.0) -> nn.Module:
    """A freshly initialised network; `width` < 1 gives the light variants."""
    if not 0.0 < width <= 4.0:
        raise ModelError(f"Width multiplier {width} is out of range; expected 0 < width <= 4.")
    return _lookup(arch)[1](width=width)


def _lookup(arch: str) -> tuple[str, Callable[..., nn.Module]]:
    if arch not in ARCHITECTURES:
        raise ModelError(f"Unknown architecture {arch!r}; expected one of "
                         f"{', '.join(ARCHITECTURES)}.")
    return ARCHITECTURES[arch]
