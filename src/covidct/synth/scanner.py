"""The scanner: in-plane blur (MTF) and filtered-back-projection noise grain.

FBP noise is not white: its power spectrum rises with spatial frequency (the ramp
filter, |f|) until the reconstruction kernel's apodisation window cuts it. We draw
complex Gaussian noise directly in the Fourier domain, shape it by sqrt(|f|) * window,
and add it to the blurred image's spectrum, so each slice costs one forward and one
inverse real FFT. (Forward projection + FBP through skimage's radon/iradon would give
the same grain but costs seconds per 512x512 slice.) Slice-thickness averaging happens
before this, in `render`.
"""

from __future__ import annotations

import numpy as np
from scipy import fft

# kernel -> (MTF Gaussian sigma mm, apodisation cut-off as a fraction of Nyquist, edge boost)
_KERNELS = {
    "soft": (0.75, 0.55, 0.0),
    "standard": (0.55, 0.75, 0.0),
    "sharp": (0.40, 0.95, 0.35),
}


def _filters(ny: int, nx: int, pixel_mm: float, kernel: str) -> tuple[np.ndarray, np.ndarray]:
    """(MTF, noise amplitude filter) on the rfft2 grid, noise filter scaled to unit SD."""
    sigma_mm, cut, boost = _KERNELS[kernel]
    fy = fft.fftfreq(ny, d=pixel_mm)[:, None]
    fx = fft.rfftfreq(nx, d=pixel_mm)[None, :]
    f = np.sqrt(fy * fy + fx * fx)  # cycles / mm
    nyquist = 0.5 / pixel_mm
    mtf = np.exp(-2.0 * (np.pi * sigma_mm * f) ** 2)
    if boost:  # sharp kernels overshoot at mid frequencies (edge enhancement)
        mtf = mtf * (1.0 + boost * np.sin(np.clip(f / (0.7 * nyquist), 0, 1) * np.pi))
    rel = f / (cut * nyquist)
    window = np.where(rel < 1.0, 0.5 * (1.0 + np.cos(np.pi * np.clip(rel, 0, 1))), 0.0)
    # ramp x window, with a small floor so the lowest frequencies are not noise-free
    amp = np.sqrt(np.maximum(f, 0.08 * nyquist)) * window
    # unit SD: Parseval over the full (two-sided) spectrum
    full = amp.copy()
    full[:, 1:(nx + 1) // 2] *= np.sqrt(2.0)  # columns present twice in the full spectrum
    power = float((full**2).sum()) / (ny * nx)
    amp = amp / np.sqrt(max(power, 1e-12))
    return mtf.astype(np.float32), amp.astype(np.float32)


def apply_scanner(hu: np.ndarray, pixel_mm: float, kernel: str, noise_hu: float,
                  rng: np.random.Generator, chunk: int = 8) -> np.ndarray:
    """Blur and add correlated noise to a (z, y, x) float32 stack, in place; returns it."""
    nz, ny, nx = hu.shape
    mtf, amp = _filters(ny, nx, pixel_mm, kernel)
    scale = np.float32(noise_hu * np.sqrt(ny * nx / 2.0))
    for k0 in range(0, nz, chunk):
        block = hu[k0:k0 + chunk]
        spec = fft.rfft2(block, workers=1)
        spec *= mtf
        shape = spec.shape
        noise = rng.standard_normal(shape, dtype=np.float32) + 1j * rng.standard_normal(
            shape, dtype=np.float32)
        noise *= amp * scale
        spec += noise
        hu[k0:k0 + chunk] = fft.irfft2(spec, s=(ny, nx), workers=1)
    return hu
