"""The seed's training augmentations, implemented once (used by the training loops).

All work on batches of model inputs (n, 1, H, W) in [0, 1] (air = 0 after windowing,
so zero padding is air) with one random affine per sample, drawn from a torch.Generator
so runs are reproducible.

- Lung: random crop (zoom into a random window), horizontal flip, Gaussian noise added
  inside the lung (scale 0.1 x N(mean 0, std 0.8)) on half of the samples: noise on every
  sample let the network learn "noisy = lung" (validation Dice fell from 0.94 to 0.27 in
  three epochs while the training loss kept falling). A horizontal flip mirrors the patient,
  so the right (1) and left (2) lung labels are swapped with the image.
- Classifier: rotation, horizontal flip, crop (applied alike to the infection maps that
  supervise the auxiliary localization heads during training).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LUNG_CROP_SCALE = (0.75, 1.0)  # side of the crop window / side of the slice
LUNG_NOISE_SCALE = 0.1
LUNG_NOISE_MEAN = 0.0
LUNG_NOISE_STD = 0.8
LUNG_NOISE_P = 0.5  # share of samples that get the noise
CLASSIFIER_MAX_ROTATION_DEG = 15.0
CLASSIFIER_CROP_SCALE = (0.8, 1.0)


def swap_right_left(labels: torch.Tensor) -> torch.Tensor:
    """Right lung (1) <-> left lung (2); background unchanged."""
    out = labels.clone()
    out[labels == 1] = 2
    out[labels == 2] = 1
    return out


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def random_affines(n: int, generator: torch.Generator, *, scale: tuple[float, float],
                   max_rotation_deg: float = 0.0,
                   flip_p: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 2, 3) sampling affines (output -> input coordinates in [-1, 1]) and the flip flags.

    scale < 1 samples a window smaller than the slice (a crop, shown zoomed); the window
    is shifted at random but stays inside the slice.
    """
    s = _uniform(n, *scale, generator)
    angle = _uniform(n, -max_rotation_deg, max_rotation_deg, generator) * math.pi / 180.0
    flip = torch.rand(n, generator=generator) < flip_p
    tx = _uniform(n, -1.0, 1.0, generator) * (1.0 - s)
    ty = _uniform(n, -1.0, 1.0, generator) * (1.0 - s)
    cos, sin = torch.cos(angle) * s, torch.sin(angle) * s
    fx = torch.where(flip, -1.0, 1.0)
    theta = torch.stack([
        torch.stack([cos * fx, -sin, tx], dim=1),
        torch.stack([sin * fx, cos, ty], dim=1),
    ], dim=1)
    return theta, flip


def warp(images: torch.Tensor, theta: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Resample (n, c, H, W) through the affines; outside the slice is 0 (air)."""
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode=mode, padding_mode="zeros", align_corners=False)


def augment_lung_batch(images: torch.Tensor, labels: torch.Tensor,
                       generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The seed's lung augmentation on (n,1,H,W) images and their labels.

    Labels are hard, (n,H,W) ints 0/1/2 (warped nearest), or soft, (n,3,H,W) class shares
    per pixel (warped bilinear, so boundaries stay sub-pixel).
    """
    images = images.float()
    theta, flip = random_affines(images.shape[0], generator, scale=LUNG_CROP_SCALE)
    images = warp(images, theta)
    if labels.ndim == 4:
        labels = warp(labels.float(), theta)
        labels[:, 0] += 1.0 - labels.sum(dim=1)  # zero padding outside the slice is background
        labels = torch.where(flip[:, None, None, None], labels[:, [0, 2, 1]], labels)
        lung = labels[:, 1:].sum(dim=1, keepdim=True) > 0.5
    else:
        labels = warp(labels[:, None].float(), theta, mode="nearest")[:, 0].long()
        labels = torch.where(flip[:, None, None], swap_right_left(labels), labels)
        lung = labels[:, None] > 0
    noise = LUNG_NOISE_MEAN + LUNG_NOISE_STD * torch.randn(images.shape, generator=generator)
    noisy = (torch.rand(images.shape[0], generator=generator) < LUNG_NOISE_P).view(-1, 1, 1, 1)
    images = images + LUNG_NOISE_SCALE * noise * (lung & noisy)
    return images, labels


def augment_classifier_batch(images: torch.Tensor, generator: torch.Generator,
                             maps: torch.Tensor | None = None,
                             ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The seed's classifier augmentation: rotation, horizontal flip, crop.

    With `maps` ((n, c, h, w) infection maps in the same frame as the images), the same
    transform is applied to them and (images, maps) is returned.
    """
    theta, _ = random_affines(images.shape[0], generator, scale=CLASSIFIER_CROP_SCALE,
                              max_rotation_deg=CLASSIFIER_MAX_ROTATION_DEG)
    warped = warp(images.float(), theta)
    if maps is None:
        return warped
    return warped, warp(maps.float(), theta)
