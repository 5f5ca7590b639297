"""The held-out family's scanner: its own slice profile, MTF, noise and artefacts.

- slice sensitivity profile: a Gaussian along z (FWHM 1.0-1.3 x the slice thickness)
  sampled at the slice centres, where the training family averages a box;
- in-plane MTF: a Butterworth low-pass 1 / (1 + (f / f50)^(2 order)) (f50 0.28, 0.40 or
  0.62 cycles/mm for 'smooth', 'medium', 'edge'; 'edge' adds an unsharp mask);
- noise: white noise shaped by the noise power spectrum f exp(-(f / f_peak)^2) (a band-pass
  peaking at f_peak), then made non-stationary: scaled per pixel by the square root of the
  attenuation along the row and the column through it (more noise laterally and behind
  dense bone, as at low dose);
- low-dose streaks: thin dark and bright lines, mostly left-right, through bone, their
  strength growing with the attenuation along them;
- cupping (beam hardening, the centre of the body darker) and a global HU offset.
"""

from __future__ import annotations

import numpy as np
from scipy import fft, ndimage

# kernel -> (f50 cycles/mm, Butterworth order, noise peak cycles/mm, unsharp amount)
KERNEL_MODEL = {"smooth": (0.28, 2.0, 0.18, 0.0), "medium": (0.40, 2.5, 0.26, 0.0),
                "edge": (0.62, 3.0, 0.38, 0.6)}


def slice_profile(fine: np.ndarray, fine_mm: float, slice_mm: float, per_slice: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Gaussian-SSP average of a fine (Z, y, x) stack onto (Z // per_slice) slices."""
    fwhm = slice_mm * rng.uniform(1.0, 1.3)
    blurred = ndimage.gaussian_filter1d(fine, fwhm / 2.3548 / fine_mm, axis=0, mode="nearest")
    centres = np.arange(fine.shape[0] // per_slice) * per_slice + (per_slice - 1) / 2.0
    lo = np.floor(centres).astype(int)
    w = (centres - lo).astype(np.float32)[:, None, None]
    hi = np.minimum(lo + 1, fine.shape[0] - 1)
    return blurred[lo] * (1 - w) + blurred[hi] * w


def _freq(ny: int, nx: int, pixel_mm: float) -> np.ndarray:
    fy = fft.fftfreq(ny, d=pixel_mm)[:, None]
    fx = fft.fftfreq(nx, d=pixel_mm)[None, :]
    return np.sqrt(fy * fy + fx * fx)


def apply_scanner(hu: np.ndarray, pixel_mm: float, kernel: str, noise_hu: float,
                  streaks: float, cupping_hu: float, hu_offset: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Blur, noise and artefacts on a (z, y, x) float32 HU stack at its output grid.

    noise_hu: SD at the centre of an average chest; streaks: 0..1 strength. Returns a new
    array (float32).
    """
    nz, ny, nx = hu.shape
    f50, order, peak, unsharp = KERNEL_MODEL[kernel]
    f = _freq(ny, nx, pixel_mm)
    mtf = 1.0 / (1.0 + (f / f50) ** (2 * order))
    if unsharp:
        mtf = mtf * (1.0 + unsharp * (1 - np.exp(-(f / (0.5 * f50)) ** 2)))
    nps = f * np.exp(-((f / peak) ** 2))
    nps = np.sqrt(nps / nps.mean())  # amplitude filter, unit-variance output
    out = np.empty_like(hu, dtype=np.float32)
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
    for k in range(nz):
        sl = hu[k]
        img = np.real(fft.ifft2(fft.fft2(sl) * mtf)).astype(np.float32)
        mu = np.clip((sl + 1000.0) / 1000.0, 0, 3) * 0.02 * pixel_mm  # attenuation per pixel
        row, col = mu.sum(axis=1, keepdims=True), mu.sum(axis=0, keepdims=True)
        body = sl > -500
        # noise SD ~ sqrt(exp(attenuation)), softened: tube-current modulation and bowtie
        sd_map = np.sqrt(0.5 * (np.exp(0.35 * row) + np.exp(0.35 * col)))
        ref = np.median(sd_map[body]) if body.any() else 1.0
        sd_map = noise_hu * sd_map / ref
        white = rng.standard_normal((ny, nx)).astype(np.float32)
        grain = np.real(fft.ifft2(fft.fft2(white) * nps)).astype(np.float32)
        img += grain * sd_map.astype(np.float32)
        if streaks > 0:
            img += _streaks(sl, mu, row, streaks, xx, yy, rng)
        if cupping_hu and body.any():
            cy, cx = np.argwhere(body).mean(axis=0)
            r2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / max(float(body.sum()) / np.pi, 1.0)
            img -= (cupping_hu * np.clip(1 - r2, 0, 1) * body).astype(np.float32)
        out[k] = img + hu_offset
    return out


def _streaks(sl: np.ndarray, mu: np.ndarray, row: np.ndarray, strength: float,
             xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dark / bright lines through bone, near left-right, stronger where rows attenuate more."""
    bone = np.argwhere(sl > 300)
    if len(bone) == 0:
        return np.zeros_like(sl, dtype=np.float32)
    load = float(row.max())
    count = int(rng.poisson(strength * 4.0 * np.clip(load / 8.0, 0.3, 2.0)))
    out = np.zeros(sl.shape, np.float32)
    for _ in range(count):
        y0, x0 = bone[rng.integers(len(bone))]
        angle = rng.normal(0.0, np.deg2rad(14.0))
        d = (yy - y0) * np.cos(angle) - (xx - x0) * np.sin(angle)
        width = rng.uniform(0.8, 2.0)
        amp = rng.uniform(15.0, 70.0) * strength * (1 if rng.random() < 0.35 else -1)
        out += (amp * (np.exp(-(d / width) ** 2) - 0.4 * np.exp(-(d / (3 * width)) ** 2)))
    return out
