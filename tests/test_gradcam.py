"""Grad-CAM on a tiny classifier of our own that has forward_stages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from covidct import gradcam
from covidct.errors import ModelError


class TinyClassifier(nn.Module):
    """224 -> feat28 (stride 8) -> feat14 (stride 2) -> logit, in one graph."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(1, 4, kernel_size=8, stride=8)
        self.down = nn.Conv2d(4, 6, kernel_size=2, stride=2)
        self.head = nn.Linear(6, 1)

    def forward_stages(self, x):
        feat28 = torch.relu(self.stem(x))
        feat14 = torch.relu(self.down(feat28))
        return feat28, feat14, self.head(feat14.mean(dim=(2, 3)))[:, 0]

    def forward(self, x):
        return self.forward_stages(x)[2]


def test_maps_have_the_input_size_are_in_unit_range_and_use_one_backward_per_batch(
        monkeypatch):
    calls = []
    real_grad = torch.autograd.grad

    def counting_grad(*args, **kwargs):
        calls.append(1)
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting_grad)
    model = TinyClassifier()
    x = torch.rand(5, 1, 224, 224)
    cams = gradcam.raw_gradcams(model, x, batch_size=8)
    assert len(calls) == 1  # both layers from one backward pass
    assert cams.fine.shape == (5, 28, 28) and cams.coarse.shape == (5, 14, 14)
    assert (cams.fine >= 0).all() and (cams.coarse >= 0).all()
    np.testing.assert_allclose(cams.logit, model(x).detach().numpy(), rtol=1e-5, atol=1e-5)
    fused = gradcam.fuse_cams(cams, size=224)
    assert fused.shape == (5, 224, 224) and fused.dtype == np.float32
    assert fused.min() >= 0.0 and fused.max() <= 1.0
    assert all(p.grad is None for p in model.parameters())

    calls.clear()
    gradcam.raw_gradcams(model, x, batch_size=2)
    assert len(calls) == 3


def test_bf16_maps_agree_with_fp32():
    model = TinyClassifier()
    x = torch.rand(3, 1, 224, 224)
    fp32 = gradcam.fuse_cams(gradcam.raw_gradcams(model, x))
    bf16 = gradcam.fuse_cams(gradcam.raw_gradcams(model, x, bf16=True))
    assert np.abs(fp32 - bf16).max() < 0.1


def test_one_scale_per_case_keeps_weak_slices_weak():
    fine = np.stack([np.ones((28, 28)), np.full((28, 28), 0.1)]).astype(np.float32)
    coarse = np.stack([np.ones((14, 14)), np.full((14, 14), 0.1)]).astype(np.float32)
    fused = gradcam.fuse_cams(gradcam.RawCams(fine, coarse, np.zeros(2, np.float32)), size=32)
    assert fused[0].max() == pytest.approx(1.0)
    assert fused[1].max() == pytest.approx(0.01)  # not stretched to 1 as per-image min-max would


def test_all_zero_cams_and_empty_input():
    zeros = gradcam.RawCams(np.zeros((2, 28, 28), np.float32), np.zeros((2, 14, 14), np.float32),
                            np.zeros(2, np.float32))
    assert not gradcam.fuse_cams(zeros).any()
    empty = gradcam.raw_gradcams(TinyClassifier(), torch.zeros(0, 1, 224, 224))
    assert gradcam.fuse_cams(empty).shape == (0, 224, 224)


def test_a_model_without_forward_stages_is_refused():
    with pytest.raises(ModelError, match="forward_stages"):
        gradcam.raw_gradcams(nn.Conv2d(1, 1, 3), torch.zeros(1, 1, 224, 224))
