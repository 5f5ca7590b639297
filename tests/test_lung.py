"""The lung stage: inference on the input grid and 3D post-processing, with known answers."""

from __future__ import annotations

import numpy as np
import torch

from covidct.lung import postprocess_lung_mask, segment_lungs
from covidct.preprocess import lung_model_input
from covidct.volume import Volume
from test_train_data import phantom


class ThresholdLungNet(torch.nn.Module):
    """A stand-in lung model: dark pixels are lung, split at the image's middle column."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lung = (x[:, 0] < 0.4).float()
        col = torch.arange(x.shape[-1]).view(1, 1, -1) < x.shape[-1] / 2
        right, left = lung * col, lung * (~col)
        return torch.stack([1 - lung, right, left], dim=1) * 10.0 + self.dummy


def test_segment_lungs_on_the_input_grid() -> None:
    volume, truth, _ = phantom(1, covid=False, shape=(6, 80, 72))
    # The stand-in calls every dark pixel lung: make everything but the lungs bright.
    hu = volume.hu.copy()
    hu[truth == 0] = np.maximum(hu[truth == 0], 40.0)
    mask = segment_lungs(volume.with_hu(hu), ThresholdLungNet(), batch_size=4, dtype="fp32")
    assert mask.shape == volume.shape and mask.dtype == np.uint8
    for side in (1, 2):
        inter = np.sum((mask == side) & (truth == side))
        dice = 2 * inter / (np.sum(mask == side) + np.sum(truth == side))
        assert dice > 0.95


def test_postprocess_keeps_largest_fills_holes_and_reassigns_islands() -> None:
    labels = np.zeros((5, 40, 40), dtype=np.uint8)
    labels[:, 5:35, 4:16] = 1
    labels[:, 5:35, 24:36] = 2
    labels[2, 15:18, 8:11] = 0  # a hole in the right lung (a lesion)
    labels[:, 20:24, 6:9] = 2  # part of the right lung predicted as left
    labels[0, 0:2, 38:40] = 1  # a small spurious blob far away
    out = postprocess_lung_mask(labels)
    assert out[2, 16, 9] == 1  # hole filled
    assert np.all(out[:, 20:24, 6:9] == 1)  # inconsistent island given to the right lung
    assert out[0, 0, 39] == 0  # spurious blob dropped
    assert np.all(out[:, 5:35, 24:36] == 2)


def test_postprocess_empty() -> None:
    assert not postprocess_lung_mask(np.zeros((2, 8, 8), np.uint8)).any()


def test_fill_holes_per_slice_matches_scipy_slice_by_slice() -> None:
    from scipy import ndimage

    from covidct.lung import fill_holes_per_slice

    rng = np.random.default_rng(0)
    mask = ndimage.binary_opening(rng.random((20, 64, 64)) > 0.5)
    expected = np.stack([ndimage.binary_fill_holes(s) for s in mask])
    assert (fill_holes_per_slice(mask) == expected).all()
    ring = np.zeros((3, 32, 32), bool)
    ring[:, 5:20, 5:20] = True
    ring[:, 8:15, 8:15] = False
    ring[1, 8:15, 5:8] = False  # slice 1: the ring opens to the outside, so no hole
    filled = fill_holes_per_slice(ring)
    assert filled[0, 10, 10] and filled[2, 10, 10] and not filled[1, 10, 10]


def test_antialiased_input_keeps_less_noise() -> None:
    """Shrinking 512 -> 224: plain bilinear sampling keeps most of the per-pixel noise; the
    antialiased resize averages the ~2.3 x 2.3 source pixels each output pixel covers."""
    rng = np.random.default_rng(0)
    hu = (-800.0 + 100.0 * rng.standard_normal((2, 512, 512))).astype(np.float32)
    plain = lung_model_input(hu).std().item()
    smooth = lung_model_input(hu, antialias=True).std().item()
    # 100 HU noise is 0.1 on the [0, 1] scale; averaging over 2.3^2 pixels divides it by ~2.3
    assert 0.06 < plain < 0.1 and 0.025 < smooth < 0.05
    assert abs(lung_model_input(hu, antialias=True).mean().item() - 0.2) < 0.005


def test_segment_lungs_follows_the_cards_input_antialias() -> None:
    """A LoadedModel whose card says input_antialias gets antialiased inputs."""
    from covidct.models.registry import LoadedModel, ModelSpec

    seen: list[float] = []

    class Probe(ThresholdLungNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(float(x.std()))
            return super().forward(x)

    rng = np.random.default_rng(1)
    hu = (-800.0 + 100.0 * rng.standard_normal((1, 512, 512))).astype(np.float32)
    volume = Volume.from_spacing(hu, (1.0, 0.7, 0.7))
    for flag in (False, True):
        spec = ModelSpec(name="probe", task="lung", arch="unet_vgg11", input_antialias=flag)
        segment_lungs(volume, LoadedModel(spec, Probe(), ""), dtype="fp32")
    assert seen[1] < 0.6 * seen[0]
