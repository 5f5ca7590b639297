"""PNG overlays of the most affected slices: CT in a lung window beside the same slice
with the heatmap, the lung outline and the infection outline.

Radiological convention: patient right on image left, anterior at the top; pixels keep
their physical aspect (dy / dx).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from covidct.pipeline import CaseResult

LUNG_WINDOW_HU = (-1350.0, 150.0)  # level -600, width 1500
HEATMAP_FLOOR = 0.05               # map values below this are drawn transparent


def display_flips(affine_lps: np.ndarray) -> tuple[bool, bool]:
    """(flip rows, flip columns) that put anterior at the top and patient right on the left."""
    affine = np.asarray(affine_lps)
    return bool(affine[1, 1] < 0), bool(affine[0, 2] < 0)


def display_slice(image: np.ndarray, affine_lps: np.ndarray) -> np.ndarray:
    flip_rows, flip_cols = display_flips(affine_lps)
    if flip_rows:
        image = image[::-1]
    if flip_cols:
        image = image[:, ::-1]
    return image


def select_slices(result: CaseResult, count: int) -> list[int]:
    """The `count` most affected lung slices (infected area, then map mass, then
    probability), returned in ascending z."""
    if count <= 0 or not result.has_lung.any():
        return []
    zs = np.flatnonzero(result.has_lung)
    infected = result.infection_mask[zs].sum(axis=(1, 2), dtype=np.int64)
    mass = np.array([float(result.heatmap[z].sum()) for z in zs])
    order = np.lexsort((-result.prob[zs], -mass, -infected))  # last key is primary
    return sorted(int(zs[i]) for i in order[:count])


def render_overlay(result: CaseResult, z: int, path: Path, dpi: int = 80) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    volume = result.volume
    _, dy, dx = volume.spacing_mm
    ct = display_slice(np.asarray(volume.hu[z], dtype=np.float32), volume.affine)
    heat = display_slice(result.heatmap[z], volume.affine)
    lung = display_slice(result.lung_mask[z] > 0, volume.affine)
    infection = display_slice(result.infection_mask[z] > 0, volume.affine)
    height, width = ct.shape
    aspect = dy / dx
    panel_w = 4.5
    panel_h = panel_w * height * aspect / width
    fig = Figure(figsize=(2 * panel_w, panel_h + 0.6), dpi=dpi)
    axes = fig.subplots(1, 2)
    low, high = LUNG_WINDOW_HU
    for ax in axes:
        ax.imshow(ct, cmap="gray", vmin=low, vmax=high, aspect=aspect, interpolation="bilinear")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.01, 0.5, "R", color="white", transform=ax.transAxes, va="center")
        ax.text(0.97, 0.5, "L", color="white", transform=ax.transAxes, va="center")
    # result.heatmap is already zero outside the lung (pipeline.localization_maps).
    shown = np.ma.masked_less(heat, HEATMAP_FLOOR)
    axes[1].imshow(shown, cmap="jet", vmin=0.0, vmax=1.0, alpha=0.45, aspect=aspect)
    if lung.any():
        axes[1].contour(lung, levels=[0.5], colors="cyan", linewidths=0.6)
    if infection.any():
        axes[1].contour(infection, levels=[0.5], colors="yellow", linewidths=0.6)
    z_mm = float(volume.slice_positions_mm()[z])
    axes[0].set_title(f"slice {z}  z = {z_mm:.1f} mm", fontsize=9)
    axes[1].set_title(f"p(abnormal) = {float(result.prob[z]):.2f}  "
                      "(cyan lung, yellow infection)", fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.92, wspace=0.02)
    fig.savefig(path)
    return path


def write_overlays(result: CaseResult, out_dir: Path, count: int) -> list[str]:
    """PNGs overlays/slice_KKKK.png; returns their paths relative to out_dir."""
    folder = out_dir / "overlays"
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for z in select_slices(result, count):
        name = f"slice_{z:04d}.png"
        render_overlay(result, z, folder / name)
        names.append(f"overlays/{name}")
    return names
