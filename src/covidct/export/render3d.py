"""3D render: translucent lungs and infection surfaces (skimage marching cubes, in mm),
drawn with matplotlib (Agg), seen from the front (patient right on the image left)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from covidct.blocks import bounding_box
from covidct.pipeline import CaseResult

log = logging.getLogger(__name__)


def block_downsample(mask: np.ndarray, spacing_mm: tuple[float, float, float],
                     voxel_mm: float) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Mean over integer blocks of about voxel_mm per side -> (fractions float32, spacing)."""
    steps = [max(1, int(round(voxel_mm / s))) for s in spacing_mm]
    cropped = mask[tuple(slice(0, (n // k) * k) for n, k in zip(mask.shape, steps, strict=True))]
    shape = []
    for n, k in zip(cropped.shape, steps, strict=True):
        shape += [n // k, k]
    # counted in int32 over a view: no float copy of the whole mask
    counts = cropped.reshape(shape).sum(axis=(1, 3, 5), dtype=np.int32)
    fractions = counts.astype(np.float32) / np.float32(np.prod(steps))
    return fractions, tuple(float(s * k) for s, k in zip(spacing_mm, steps, strict=True))


def surface_mm(fractions: np.ndarray, spacing_mm: tuple[float, float, float]
               ) -> tuple[np.ndarray, np.ndarray] | None:
    """Marching-cubes surface at 0.5 of a (z, y, x) fraction grid -> (verts (x, y, z) mm, faces)."""
    from skimage.measure import marching_cubes

    if fractions.size == 0 or fractions.max() <= 0.5:
        return None
    padded = np.pad(fractions, 1)  # closed surfaces at the border
    verts, faces, _, _ = marching_cubes(padded, level=0.5, spacing=spacing_mm)
    verts -= np.asarray(spacing_mm)
    return verts[:, ::-1].copy(), faces


def render_3d(result: CaseResult, path: Path, voxel_mm: float = 4.0, dpi: int = 90) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    fig = Figure(figsize=(6.0, 6.0), dpi=dpi)
    ax = fig.add_subplot(projection="3d")
    lung = result.lung_mask > 0
    spacing = result.volume.spacing_mm
    if lung.any():
        box = bounding_box(lung)
        layers = (
            ((result.lung_mask[box] == 1), (0.3, 0.5, 0.9, 0.15)),
            ((result.lung_mask[box] == 2), (0.3, 0.5, 0.9, 0.15)),
            ((result.infection_mask[box] > 0), (0.95, 0.25, 0.15, 0.85)),
        )
        extent = np.array([(s.stop - s.start) * sp for s, sp in zip(box, spacing, strict=True)])
        for mask, colour in layers:
            fractions, grid_mm = block_downsample(mask, spacing, voxel_mm)
            surface = surface_mm(fractions, grid_mm)
            if surface is None:
                continue
            verts, faces = surface
            colours = np.tile(np.asarray(colour, float), (len(faces), 1))
            ax.add_collection3d(Poly3DCollection(
                verts[faces], facecolors=colours, linewidths=0.0, shade=True))
        ax.set_xlim(0, extent[2])
        ax.set_ylim(0, extent[1])
        ax.set_zlim(0, extent[0])
        ax.set_box_aspect((extent[2], extent[1], extent[0]))
    else:
        ax.text2D(0.3, 0.5, "no lung found", transform=ax.transAxes)
    ax.view_init(elev=10, azim=-90)  # from the front: patient right on the left
    ax.set_axis_off()
    ax.set_title("lungs (blue) and infection (red), anterior view", fontsize=9)
    fig.savefig(path)
    return path
