"""The slice stage: one box per case, only lung slices scored, batched."""

from __future__ import annotations

import numpy as np
import torch

from covidct.classify import classify_slices, lung_slice_flags
from covidct.models import create_model
from test_train_data import phantom


class DarknessClassifier(torch.nn.Module):
    """A stand-in: logit grows with the mean intensity of the crop."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(20.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.mean(dim=(1, 2, 3)) - 0.3) * self.scale


def test_classify_slices_scores_only_lung_slices() -> None:
    volume, lung, _ = phantom(2, covid=True, shape=(8, 64, 64))
    lung[0] = 0
    lung[-1] = 0
    scores = classify_slices(volume.hu, lung, volume.spacing_mm, DarknessClassifier(),
                             batch_size=3, dtype="fp32")
    assert scores.has_lung.tolist() == [False] + [True] * 6 + [False]
    assert scores.prob[0] == 0 and scores.prob[-1] == 0
    assert np.all((scores.prob[1:-1] > 0) & (scores.prob[1:-1] < 1))
    assert scores.box is not None and scores.box.shape[0] == scores.box.shape[1]


def test_classify_without_lung() -> None:
    volume, lung, _ = phantom(2, covid=False, shape=(4, 32, 32))
    scores = classify_slices(volume.hu, np.zeros_like(lung), volume.spacing_mm,
                             create_model("resnet18", width=0.125))
    assert scores.box is None and not scores.has_lung.any() and not scores.prob.any()


def test_batching_and_bf16_agree_with_fp32() -> None:
    volume, lung, _ = phantom(3, covid=True, shape=(6, 48, 48))
    torch.manual_seed(0)
    model = create_model("resnet18", width=0.25).eval()
    a = classify_slices(volume.hu, lung, volume.spacing_mm, model, batch_size=2, dtype="fp32")
    b = classify_slices(volume.hu, lung, volume.spacing_mm, model, batch_size=6, dtype="fp32")
    c = classify_slices(volume.hu, lung, volume.spacing_mm, model, batch_size=6, dtype="bf16")
    np.testing.assert_allclose(a.prob, b.prob, atol=1e-5)
    np.testing.assert_allclose(a.prob, c.prob, atol=0.05)


def test_lung_slice_flags_uses_area_in_mm2() -> None:
    mask = np.zeros((2, 10, 10), np.uint8)
    mask[0, :5, :5] = 1  # 25 px x 4 mm2 = 100 mm2
    mask[1, :4, :4] = 1  # 64 mm2
    assert lung_slice_flags(mask, (1.0, 2.0, 2.0)).tolist() == [True, False]
