"""Load a torchvision ImageNet checkpoint (a local file the user names) into a backbone.

Our ResNets and U-Net encoders use torchvision's parameter names, so the checkpoint's
keys load as they are: every backbone parameter of ours must be present with the same
shape (strict), the ImageNet head (`fc.*` of a ResNet, `classifier.*` of a VGG) is
ignored, and our own heads/decoders keep their initialisation. The first convolution
(`conv1.weight` / `features.0.weight`) takes 1 channel: an RGB kernel (out, 3, k, k) is
summed over its 3 input channels, which gives the same response to a grey image
replicated into R, G and B. No download ever happens here.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from covidct.errors import ModelError

logger = logging.getLogger(__name__)

FIRST_CONV_KEYS = ("conv1.weight", "features.0.weight")
IGNORED_PREFIXES = ("fc.", "classifier.")
OWN_PREFIXES = ("head.", "center.", "decoder.", "final.")  # ours, not in ImageNet checkpoints


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .pth/.pt (torch.save) or .safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Pretrained weights file {path} does not exist; pass the path of a "
                         "torchvision ImageNet checkpoint (e.g. resnet50-0676ba61.pth).")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch/safetensors raise many types for a bad file
        raise ModelError(f"Cannot read pretrained weights {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"{path} holds a {type(state).__name__}, not a state dict.")
    return {k.removeprefix("module."): v for k, v in state.items() if torch.is_tensor(v)}


def backbone_keys(module: nn.Module) -> list[str]:
    """Our parameter/buffer names that an ImageNet checkpoint must provide."""
    return [k for k in module.state_dict() if not k.startswith(OWN_PREFIXES)]


def load_pretrained(module: nn.Module, path: str | Path) -> list[str]:
    """Copy a torchvision checkpoint's backbone into `module`; returns the keys loaded.

    Raises ModelError naming the missing keys / mismatched shapes when the checkpoint
    does not fit (another architecture, or a light variant with fewer channels).
    """
    state = read_checkpoint(path)
    own = module.state_dict()
    wanted = backbone_keys(module)
    missing = [k for k in wanted if k not in state]
    loaded: dict[str, torch.Tensor] = {}
    mismatched = []
    for key in wanted:
        if key not in state:
            continue
        value = state[key]
        if key in FIRST_CONV_KEYS and value.ndim == 4 and value.shape[1] == 3 \
                and own[key].shape[1] == 1:
            value = value.sum(dim=1, keepdim=True)  # RGB kernels -> one grey channel
        if tuple(value.shape) != tuple(own[key].shape):
            mismatched.append(f"{key}: checkpoint {tuple(value.shape)}, "
                              f"model {tuple(own[key].shape)}")
            continue
        loaded[key] = value.to(own[key].dtype)
    if missing or mismatched:
        details = "; ".join(mismatched[:5] + [f"{k}: missing" for k in missing[:5]])
        raise ModelError(
            f"Pretrained weights {path} do not match {type(module).__name__} "
            f"({len(missing)} missing, {len(mismatched)} mismatched backbone keys: {details}). "
            "ImageNet checkpoints fit only the full-width models (width 1.0) of the same "
            "architecture (resnet18/34/50, or vgg11/vgg16 for unet_vgg11/unet_vgg16).")
    unexpected = [k for k in state if k not in own and not k.startswith(IGNORED_PREFIXES)]
    if unexpected:
        logger.warning("Ignored %d checkpoint keys not in the model (e.g. %s).",
                       len(unexpected), unexpected[0])
    module.load_state_dict(loaded, strict=False)
    logger.info("Loaded %d pretrained tensors from %s.", len(loaded), path)
    return sorted(loaded)
