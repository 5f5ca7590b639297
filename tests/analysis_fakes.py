"""Small stand-ins for the analysis tests: a phantom chest and tiny models with the real
interfaces (a thresholding lung "U-Net" and a tiny classifier with forward_stages)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from covidct.volume import Volume

SPACING_MM = (2.5, 1.5, 1.5)
SHAPE = (40, 96, 96)


class ThresholdLung(nn.Module):
    """Lung = HU below about -700 (input < 0.3 of the [-1000, 0] window); x < W/2 is right."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(50.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lung = (0.3 - x) * self.scale
        right = torch.zeros_like(x)
        right[..., : x.shape[-1] // 2] = 1.0
        return torch.cat([-lung, lung + 100.0 * (right - 1.0), lung - 100.0 * right], dim=1)


class BrightSpotClassifier(nn.Module):
    """feat28 responds to lesion-like density (windowed 0.3-0.7), feat14 pools it; the
    logit rises with the amount of it. Deterministic, so the tests know the answer."""

    def __init__(self, bias: float = -45.0) -> None:
        super().__init__()
        self.pool28 = nn.AvgPool2d(8)
        self.conv14 = nn.Conv2d(1, 2, kernel_size=2, stride=2)
        with torch.no_grad():
            self.conv14.weight.fill_(0.25)
            self.conv14.bias.zero_()
        self.bias = nn.Parameter(torch.tensor(bias))

    def forward_stages(self, x: torch.Tensor):
        spot = torch.relu(0.2 - torch.abs(x - 0.5)) * 5.0  # 1 at 0.5 (HU -400), 0 beyond +-0.2
        feat28 = torch.cat([self.pool28(spot), self.pool28(x) * 0.01], dim=1)
        feat14 = torch.relu(self.conv14(feat28[:, :1]))
        logit = feat14.sum(dim=(1, 2, 3)) * 4.0 + self.bias
        return feat28, feat14, logit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(x)[2]


def fake_bundle(slice_threshold: float = 0.5, case_threshold: float = 0.1,
                classifier_bias: float = -45.0):
    """Test models; a lower classifier_bias (e.g. -80) sees only a lesion's thickest slices."""
    from covidct.models.registry import LoadedModel, ModelSpec

    lung = LoadedModel(ModelSpec(name="test-lung", task="lung", arch="threshold"),
                       ThresholdLung().eval(), "0" * 64)
    classifier = LoadedModel(
        ModelSpec(name="test-classifier", task="classifier", arch="bright-spot",
                  slice_threshold=slice_threshold, case_threshold=case_threshold),
        BrightSpotClassifier(classifier_bias).eval(), "1" * 64)
    return SimpleNamespace(lung=lung, classifier=classifier)


def _ellipsoid(shape, spacing, centre_mm, radii_mm) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing, strict=True)],
                        indexing="ij")
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre_mm, radii_mm,
                                                       strict=True)) <= 1.0


def phantom(lesion: bool = True, shape=SHAPE, spacing=SPACING_MM):
    """(Volume, lung labels, lesion mask): soft tissue everywhere, two ellipsoid lungs at
    -850 HU, and optionally a -400 HU ground-glass sphere (radius 15 mm) in the right lung."""
    hu = np.full(shape, 40, np.int16)
    extent = [n * s for n, s in zip(shape, spacing, strict=True)]
    cz, cy, cx = (e / 2 for e in extent)
    right = _ellipsoid(shape, spacing, (cz, cy, cx - 35), (42, 50, 28))
    left = _ellipsoid(shape, spacing, (cz, cy, cx + 35), (42, 50, 28))
    hu[right | left] = -850
    lung = np.zeros(shape, np.uint8)
    lung[right], lung[left] = 1, 2
    spot = _ellipsoid(shape, spacing, (cz + 10, cy, cx - 35), (15, 15, 15)) & right
    if lesion:
        hu[spot] = -400
    volume = Volume.from_spacing(hu, spacing, (-70.0, -70.0, -600.0),
                                 metadata={"source_path": "phantom", "study_date": "20200301"})
    return volume, lung, spot if lesion else np.zeros(shape, bool)
