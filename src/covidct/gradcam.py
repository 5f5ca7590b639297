"""Fine-grained Grad-CAM localization, as in the seed.

Grad-CAM (Selvaraju et al.) is taken at two stages of the classifier, the 28x28 and the
14x14 feature maps, from ONE forward and ONE backward pass per batch: the module's
``forward_stages(x) -> (feat28, feat14, logit)`` builds feat14 from feat28 in one graph, and
``torch.autograd.grad(logit.sum(), (feat28, feat14))`` returns both gradients at once
(slices are independent, so the sum's gradient is each slice's own gradient).

Normalisation (a deliberate departure from pytorch-grad-cam's per-image min-max): each
layer's maps are divided by that layer's maximum over ALL slices explained for the case
(no minimum is subtracted; ReLU already makes them >= 0). A slice with weak evidence
therefore keeps a weak map instead of being stretched to full scale, and the maps of
one case share one scale. The two [0, 1] maps are resized to the model input and
multiplied. The caller weights the result by the slice probability (see pipeline).
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from covidct.errors import ModelError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawCams:
    """Unnormalised, non-negative Grad-CAMs at the two stages, one per input slice."""

    fine: np.ndarray    # (n, h28, w28) float32, the 28x28 stage
    coarse: np.ndarray  # (n, h14, w14) float32, the 14x14 stage
    logit: np.ndarray   # (n,) float32, the classifier's logits from the same pass


def _cam(feat: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """ReLU(sum_c mean_hw(dy/dA_c) * A_c) -> (n, h, w) float32."""
    weights = grad.float().mean(dim=(2, 3), keepdim=True)
    return F.relu((weights * feat.float()).sum(dim=1))


def raw_gradcams(module: torch.nn.Module, x: torch.Tensor, *, batch_size: int = 32,
                 bf16: bool = False) -> RawCams:
    """Grad-CAMs of (n, 1, 224, 224) classifier inputs; one forward + one backward per batch."""
    if not hasattr(module, "forward_stages"):
        raise ModelError(
            f"The classifier {type(module).__name__} has no forward_stages(x) -> "
            "(feat28, feat14, logit); Grad-CAM needs it. Use a covidct classifier model.")
    module.eval()
    fine, coarse, logits = [], [], []
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    for start in range(0, x.shape[0], batch_size):
        batch = x[start:start + batch_size].detach().float().requires_grad_(True)
        with torch.enable_grad(), autocast:
            feat28, feat14, logit = module.forward_stages(batch)
            grad28, grad14 = torch.autograd.grad(logit.float().sum(), (feat28, feat14))
        with torch.no_grad():
            fine.append(_cam(feat28, grad28).numpy())
            coarse.append(_cam(feat14, grad14).numpy())
            logits.append(logit.detach().float().reshape(-1).numpy())
    if not fine:
        return RawCams(np.zeros((0, 28, 28), np.float32), np.zeros((0, 14, 14), np.float32),
                       np.zeros(0, np.float32))
    return RawCams(np.concatenate(fine), np.concatenate(coarse), np.concatenate(logits))


def _normalise(cams: np.ndarray, scale: float | None) -> np.ndarray:
    """Divide by one scale for the whole stack (its maximum unless given) -> [0, 1]."""
    top = float(cams.max()) if scale is None and cams.size else (scale or 0.0)
    if top <= 0.0 or not np.isfinite(top):
        return np.zeros_like(cams, dtype=np.float32)
    return np.clip(cams / top, 0.0, 1.0).astype(np.float32)


def fuse_cams(cams: RawCams, size: int = 224, *, fine_scale: float | None = None,
              coarse_scale: float | None = None) -> np.ndarray:
    """Normalise each stage over the stack, resize to (size, size), multiply -> (n, size, size).

    fine_scale / coarse_scale: fixed divisors instead of the stack maxima (to compare
    maps across cases on one absolute scale).
    """
    n = cams.fine.shape[0]
    if n == 0:
        return np.zeros((0, size, size), np.float32)
    fine = torch.from_numpy(_normalise(cams.fine, fine_scale))[:, None]
    coarse = torch.from_numpy(_normalise(cams.coarse, coarse_scale))[:, None]
    fine = F.interpolate(fine, size=(size, size), mode="bilinear", align_corners=False)
    coarse = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return (fine * coarse)[:, 0].clamp_(0.0, 1.0).numpy()
