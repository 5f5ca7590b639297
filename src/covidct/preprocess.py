"""Model-input preprocessing, shared by training and inference (one function each).

Every spatial step that feeds a model returns what is needed to map the output back
to the slice grid (a CropBox, the original shape).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

MODEL_INPUT_SIZE = 224
LUNG_HU_WINDOW = (-1000.0, 0.0)
CLASSIFIER_HU_WINDOW = (-1000.0, 200.0)
ROI_MARGIN_MM = 10.0


def window_hu(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Clip HU to [low, high] and scale to [0, 1] as float32."""
    low, high = window
    out = np.clip(np.asarray(hu, dtype=np.float32), low, high)
    out -= low
    out /= high - low
    return out


def resize_slices(slices: np.ndarray | torch.Tensor, size: tuple[int, int], *,
                  mode: str = "bilinear", antialias: bool = False) -> torch.Tensor:
    """Resize a (n, y, x) stack to (n, *size); 'bilinear' for images, 'nearest' for labels.

    `antialias` (bilinear only): when shrinking, average over the source pixels each output
    pixel covers instead of sampling 2 x 2 of them. Shrinking 512 to 224 without it keeps
    almost all of the per-pixel noise (and aliases it); with it, noise drops about 2x.
    """
    tensor = torch.as_tensor(slices)
    if tensor.dtype != torch.float32:
        tensor = tensor.float()
    kwargs = {"align_corners": False, "antialias": antialias} if mode == "bilinear" else {}
    return F.interpolate(tensor[:, None], size=size, mode=mode, **kwargs)[:, 0]


def lung_model_input(hu_slices: np.ndarray, size: int = MODEL_INPUT_SIZE,
                     window: tuple[float, float] = LUNG_HU_WINDOW, *,
                     antialias: bool = False) -> torch.Tensor:
    """The seed's lung input: HU clipped to [-1000, 0], scaled to [0, 1], resized.

    hu_slices: (n, y, x). Returns a float32 tensor (n, 1, size, size). `antialias`: see
    `resize_slices` (a model's card says which its weights expect: `input_antialias`).
    """
    return resize_slices(window_hu(hu_slices, window), (size, size),
                         antialias=antialias)[:, None]


def slices_to_grid(maps: torch.Tensor | np.ndarray, shape_yx: tuple[int, int]) -> np.ndarray:
    """Resize (n, size, size) model-space maps back to (n, y, x) slice-grid maps."""
    return resize_slices(maps, shape_yx).numpy()


@dataclass(frozen=True)
class CropBox:
    """A square-in-mm in-plane crop [y0:y1, x0:x1] of a slice of shape (height, width).

    The box may extend past the slice; out-of-slice pixels are filled with air.
    """

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.y1 - self.y0, self.x1 - self.x0)


def lung_roi_box(lung_mask: np.ndarray, spacing_yx_mm: tuple[float, float],
                 margin_mm: float = ROI_MARGIN_MM) -> CropBox | None:
    """The lung region of interest: bounding box of the mask, plus a margin, made square in mm.

    lung_mask: (y, x) or (z, y, x); a 3D mask is projected along z so that every slice of a
    case shares one box (one scale for the classifier). Returns None without lung.
    """
    mask2d = np.asarray(lung_mask).astype(bool)
    if mask2d.ndim == 3:
        mask2d = mask2d.any(axis=0)
    ys = np.flatnonzero(mask2d.any(axis=1))
    xs = np.flatnonzero(mask2d.any(axis=0))
    if ys.size == 0:
        return None
    dy, dx = spacing_yx_mm
    cy, cx = (ys[0] + ys[-1] + 1) / 2.0, (xs[0] + xs[-1] + 1) / 2.0
    half_mm = max((ys[-1] + 1 - ys[0]) * dy, (xs[-1] + 1 - xs[0]) * dx) / 2.0 + margin_mm
    hy, hx = int(round(half_mm / dy)), int(round(half_mm / dx))
    y0, x0 = int(round(cy)) - hy, int(round(cx)) - hx
    return CropBox(y0, y0 + 2 * hy, x0, x0 + 2 * hx)


def crop_slices(slices: np.ndarray, box: CropBox, fill: float) -> np.ndarray:
    """Crop (n, y, x) slices to the box, padding with `fill` where it leaves the slice."""
    n, height, width = slices.shape
    out = np.full((n, *box.shape), fill, dtype=slices.dtype)
    sy0, sy1 = max(box.y0, 0), min(box.y1, height)
    sx0, sx1 = max(box.x0, 0), min(box.x1, width)
    if sy1 > sy0 and sx1 > sx0:
        out[:, sy0 - box.y0:sy1 - box.y0, sx0 - box.x0:sx1 - box.x0] = slices[:, sy0:sy1, sx0:sx1]
    return out


def classifier_input(hu_slices: np.ndarray, box: CropBox, size: int = MODEL_INPUT_SIZE,
                     window: tuple[float, float] = CLASSIFIER_HU_WINDOW, *,
                     antialias: bool = False) -> torch.Tensor:
    """The seed's classifier input: the lung ROI crop, windowed, resized. (n, 1, size, size).

    `antialias`: see `resize_slices` and the model card's `input_antialias`.
    """
    crop = crop_slices(np.asarray(hu_slices, dtype=np.float32), box, fill=-1000.0)
    return resize_slices(window_hu(crop, window), (size, size), antialias=antialias)[:, None]


def paste_back(maps: torch.Tensor | np.ndarray, box: CropBox,
               shape_yx: tuple[int, int]) -> np.ndarray:
    """Map (n, size, size) classifier-space maps back through the crop onto (n, y, x) slices."""
    resized = resize_slices(maps, box.shape).numpy()
    height, width = shape_yx
    out = np.zeros((resized.shape[0], height, width), dtype=np.float32)
    sy0, sy1 = max(box.y0, 0), min(box.y1, height)
    sx0, sx1 = max(box.x0, 0), min(box.x1, width)
    if sy1 > sy0 and sx1 > sx0:
        out[:, sy0:sy1, sx0:sx1] = resized[:, sy0 - box.y0:sy1 - box.y0,
                                           sx0 - box.x0:sx1 - box.x0]
    return out
