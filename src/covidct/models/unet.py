"""U-Net lung segmentation with a VGG11/VGG16 encoder named as torchvision's `features`.

The encoder is an `nn.Sequential` laid out exactly as torchvision's vgg11/vgg16 (no BN)
`features` (conv, ReLU, ..., MaxPool), so `features.0.weight`, `features.3.weight`, ...
load from an ImageNet checkpoint as they are. The skip connections are the outputs of
each stage (before its max-pool): 224, 112, 56, 28, 14 at 224 input; a centre block
runs at 7x7; the decoder upsamples (bilinear) and concatenates the skips (TernausNet
style). `width` scales every channel count (1.0 = torchvision's).

forward(x (n,1,224,224)) -> logits (n,3,224,224): background, right lung, left lung.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"),
}
NUM_CLASSES = 3  # background, right lung, left lung


def _scaled(channels: int, width: float) -> int:
    return max(4, int(round(channels * width)))


def make_vgg_features(config: str, width: float = 1.0,
                      in_chans: int = 1) -> tuple[nn.Sequential, list[int], list[int]]:
    """torchvision's VGG `features` layout; also the indices of each stage's last ReLU
    (the skip taps) and each stage's channel count."""
    layers: list[nn.Module] = []
    taps: list[int] = []
    channels: list[int] = []
    cin = in_chans
    for item in VGG_CONFIGS[config]:
        if item == "M":
            taps.append(len(layers) - 1)
            channels.append(cin)
            layers.append(nn.MaxPool2d(2, 2))
        else:
            cout = _scaled(int(item), width)
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
            cin = cout
    return nn.Sequential(*layers), taps, channels


class ConvRelu(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DecoderBlock(nn.Module):
    """Upsample x2 (bilinear), concatenate the skip, two 3x3 conv-BN-ReLU."""

    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.conv1 = ConvRelu(cin + cskip, cout)
        self.conv2 = ConvRelu(cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv2(self.conv1(torch.cat([x, skip], dim=1)))


class VGGUNet(nn.Module):
    """U-Net with a torchvision-compatible VGG encoder (`features`)."""

    def __init__(self, encoder: str = "vgg16", width: float = 1.0, in_chans: int = 1,
                 num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features, self.taps, skip_channels = make_vgg_features(encoder, width, in_chans)
        deep = skip_channels[-1]
        self.center = nn.Sequential(ConvRelu(deep, deep), ConvRelu(deep, deep))
        blocks = []
        cin = deep
        for cskip in reversed(skip_channels):
            blocks.append(DecoderBlock(cin, cskip, cskip))
            cin = cskip
        self.decoder = nn.ModuleList(blocks)
        self.final = nn.Conv2d(cin, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        taps = set(self.taps)
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in taps:
                skips.append(x)
        x = self.center(x)
        for block, skip in zip(self.decoder, reversed(skips), strict=True):
            x = block(x, skip)
        return self.final(x)


def unet_vgg11(width: float = 1.0, **kwargs: object) -> VGGUNet:
    return VGGUNet("vgg11", width=width, **kwargs)


def unet_vgg16(width: float = 1.0, **kwargs: object) -> VGGUNet:
    return VGGUNet("vgg16", width=width, **kwargs)
