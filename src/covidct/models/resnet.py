"""ResNet-18/34/50 slice classifiers with torchvision's parameter names.

Blocks -> model -> entry points, as in torchvision/timm, so an ImageNet checkpoint
loads key for key (see `covidct.models.pretrained`). Differences from torchvision:

- one input channel (CT); `conv1` sums an RGB checkpoint's kernels over the channels;
- the ImageNet `fc` is replaced by the seed's head: two dense layers and a sigmoid.
  `forward` returns the logit; the sigmoid belongs to the loss / inference;
- `width` scales every stage's channels (1.0 = torchvision's; light variants < 1);
- the head sees average- AND max-pooled layer4 features (concatenated): a small lesion
  is diluted by an average over the slice but not by a maximum (parameter-free, so
  ImageNet checkpoints still load).

`forward_stages` exposes the layer2 (28x28 at 224 input) and layer3 (14x14) outputs
for Grad-CAM, computed in one graph so one backward pass gives both gradients.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)  # torchvision v1.5: stride on the 3x3
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetClassifier(nn.Module):
    """A ResNet backbone + the seed's two-dense-layer head with one output logit."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: tuple[int, ...],
                 width: float = 1.0, in_chans: int = 1, hidden: int = 256,
                 dropout: float = 0.2) -> None:
        super().__init__()
        widths = [max(8, int(round(c * width))) for c in (64, 128, 256, 512)]
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(in_chans, widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, widths[0], layers[0])
        self.layer2 = self._make_layer(block, widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.maxpool_head = nn.AdaptiveMaxPool2d(1)
        self.num_features = widths[3] * block.expansion
        self.stage_channels = (widths[1] * block.expansion, widths[2] * block.expansion)
        # The seed's head: ImageNet fc -> two dense layers (+ sigmoid in the loss).
        self.head = nn.Sequential(
            nn.Linear(2 * self.num_features, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, 1),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int,
                    blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_stages(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(layer2 features (28x28 at 224), layer3 features (14x14), logit (n,))."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        feat28 = self.layer2(self.layer1(x))
        feat14 = self.layer3(feat28)
        return feat28, feat14, self.forward_head(self.layer4(feat14))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([self.avgpool(features), self.maxpool_head(features)], dim=1)
        return self.head(torch.flatten(pooled, 1))[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Slice logits (n,) for input (n, 1, H, W); p(abnormal) = sigmoid(logit)."""
        return self.forward_stages(x)[2]


def resnet18(width: float = 1.0, **kwargs: object) -> ResNetClassifier:
    return ResNetClassifier(BasicBlock, (2, 2, 2, 2), width=width, **kwargs)


def resnet34(width: float = 1.0, **kwargs: object) -> ResNetClassifier:
    return ResNetClassifier(BasicBlock, (3, 4, 6, 3), width=width, **kwargs)


def resnet50(width: float = 1.0, **kwargs: object) -> ResNetClassifier:
    return ResNetClassifier(Bottleneck, (3, 4, 6, 3), width=width, **kwargs)
