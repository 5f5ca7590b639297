"""sc/: a Secondary Capture series of the heatmap overlays, for viewers that cannot show SEG.

One RGB image per overlay slice (the same slices as the PNG overlays,
``covidct.export.overlays.select_slices``): the CT in a lung window in radiological
convention (patient right on image left, anterior at the top), the fused Grad-CAM map
(Gozes et al. 2020) in colour with the infection outline, a colour bar as legend, and the
words "NOT FOR DIAGNOSTIC USE" burned in. Written with highdicom (SC Image IOD, PS3.3
A.8.1); patient and study attributes come from the source image of that slice.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from covidct import __version__
from covidct.export.dicom_seg import MANUFACTURER
from covidct.export.dicom_uids import OutputUIDs
from covidct.export.overlays import HEATMAP_FLOOR, LUNG_WINDOW_HU, display_slice, select_slices
from covidct.io.dicom_source import SourceStack
from covidct.pipeline import CaseResult

SC_SERIES_NUMBER = 9903
WARNING_TEXT = "NOT FOR DIAGNOSTIC USE"
IMAGE_WIDTH_PX = 640


def render_sc_pixels(result: CaseResult, z: int) -> np.ndarray:
    """(rows, columns, 3) uint8 RGB of canonical slice z with its heatmap and a legend."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    volume = result.volume
    _, dy, dx = volume.spacing_mm
    ct = display_slice(np.asarray(volume.hu[z], dtype=np.float32), volume.affine)
    heat = display_slice(result.heatmap[z], volume.affine)
    infection = display_slice(result.infection_mask[z] > 0, volume.affine)
    height, width = ct.shape
    aspect = dy / dx
    dpi = 100
    fig_w = IMAGE_WIDTH_PX / dpi
    image_w = fig_w * 0.82
    fig_h = image_w * height * aspect / width + 0.9
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi, facecolor="black")
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.01, 0.45 / fig_h, 0.82, 1 - 0.9 / fig_h))
    low, high = LUNG_WINDOW_HU
    ax.imshow(ct, cmap="gray", vmin=low, vmax=high, aspect=aspect, interpolation="nearest")
    ax.imshow(np.ma.masked_less(heat, HEATMAP_FLOOR), cmap="jet", vmin=0.0, vmax=1.0,
              alpha=0.45, aspect=aspect, interpolation="nearest")
    if infection.any():
        ax.contour(infection, levels=[0.5], colors="yellow", linewidths=0.8)
    ax.set_axis_off()
    ax.text(0.01, 0.5, "R", color="white", transform=ax.transAxes, va="center")
    ax.text(0.97, 0.5, "L", color="white", transform=ax.transAxes, va="center")
    bar = fig.add_axes((0.86, 0.15, 0.03, 0.7))
    colorbar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap="jet"), cax=bar)
    colorbar.set_label("localization map (Grad-CAM)", color="white", fontsize=8)
    colorbar.ax.tick_params(colors="white", labelsize=7)
    z_mm = float(volume.slice_positions_mm()[z])
    fig.text(0.01, 1 - 0.3 / fig_h, f"covidct {__version__}  {WARNING_TEXT}", color="red",
             fontsize=10, weight="bold")
    fig.text(0.01, 0.12 / fig_h, f"z = {z_mm:.1f} mm  p(abnormal) = {float(result.prob[z]):.2f}"
             "  yellow: infection outline", color="white", fontsize=8)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3])


def build_sc_images(result: CaseResult, stack: SourceStack, uids: OutputUIDs,
                    count: int | None = None) -> list[tuple[int, Dataset]]:
    """[(canonical slice z, SC dataset)] for the overlay slices (``count``, default the
    config's overlay_count); empty when no slice has lung."""
    count = result.config.overlay_count if count is None else count
    series_uid = uids.uid("sc series")
    out = []
    for number, z in enumerate(select_slices(result, count), start=1):
        k = stack.source_index(z)
        ref = stack.datasets[k if k is not None else 0]
        key = ref.SOPInstanceUID if k is not None else f"slice {z}"
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=ref, pixel_array=render_sc_pixels(result, z),
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8, coordinate_system=hd.CoordinateSystemNames.PATIENT,
            series_instance_uid=series_uid, series_number=SC_SERIES_NUMBER,
            sop_instance_uid=uids.uid(f"sc instance {key}"), instance_number=number,
            manufacturer=MANUFACTURER, patient_orientation=("L", "P"),
            transfer_syntax_uid="1.2.840.10008.1.2.1",
            series_description="covidct heatmap overlays (not for diagnostic use)")
        sc.BurnedInAnnotation = "YES"
        sc.Laterality = ""  # General Series, type 2C: the chest is not a paired structure
        sc.ImageComments = (f"{WARNING_TEXT}. covidct {__version__} localization map "
                            "(Gozes et al. 2020) over the CT; research software.")
        out.append((z, sc))
    return out


def write_sc_images(images: list[tuple[int, Dataset]], folder: Path) -> list[Path]:
    """sc/sc_KKKK.dcm (K = canonical slice index); returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for z, sc in images:
        path = folder / f"sc_{z:04d}.dcm"
        sc.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
