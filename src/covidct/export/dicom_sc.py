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


def _jet_lut() -> np.ndarray:
    """(256, 3) uint8: matplotlib's 'jet' colour map, the heatmap's colours in the PNGs."""
    from matplotlib import colormaps

    return (colormaps["jet"](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)


def _outline(mask: np.ndarray) -> np.ndarray:
    """The boundary pixels of a 2D bool mask (the mask minus its 4-neighbour erosion)."""
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def render_sc_pixels(result: CaseResult, z: int) -> np.ndarray:
    """(rows, columns, 3) uint8 RGB of canonical slice z with its heatmap and a legend.

    Drawn with numpy and Pillow (no matplotlib figure per image): the CT in
    the lung window, the map in 'jet' at 45 % opacity where it is >= HEATMAP_FLOOR, the
    infection outline in yellow, pixels resampled to their physical aspect (dy / dx).
    """
    from PIL import Image, ImageDraw, ImageFont

    volume = result.volume
    _, dy, dx = volume.spacing_mm
    ct = display_slice(np.asarray(volume.hu[z], dtype=np.float32), volume.affine)
    heat = display_slice(result.heatmap[z], volume.affine)
    infection = display_slice(result.infection_mask[z] > 0, volume.affine)
    low, high = LUNG_WINDOW_HU
    gray = np.clip((ct - low) / (high - low) * 255.0, 0, 255).astype(np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
    shown = heat >= HEATMAP_FLOOR
    jet = _jet_lut()
    colours = jet[np.clip(heat * 255.0, 0, 255).astype(np.uint8)]
    rgb[shown] = 0.55 * rgb[shown] + 0.45 * colours[shown]
    rgb[_outline(infection)] = (255, 255, 0)
    image_w = int(IMAGE_WIDTH_PX * 0.82)
    height, width = ct.shape
    image_h = max(int(round(image_w * height * (dy / dx) / width)), 1)
    picture = Image.fromarray(rgb.astype(np.uint8)).resize((image_w, image_h), Image.NEAREST)
    top, bottom = 30, 24
    canvas = Image.new("RGB", (IMAGE_WIDTH_PX, image_h + top + bottom), "black")
    canvas.paste(picture, (4, top))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=16)
    small = ImageFont.load_default(size=12)
    draw.text((6, 6), f"covidct {__version__}  {WARNING_TEXT}", fill=(255, 0, 0), font=font)
    draw.text((8, top + image_h // 2), "R", fill="white", font=font, stroke_width=2,
              stroke_fill="black")
    draw.text((image_w - 10, top + image_h // 2), "L", fill="white", font=font,
              stroke_width=2, stroke_fill="black")
    z_mm = float(volume.slice_positions_mm()[z])
    draw.text((6, top + image_h + 5), f"z = {z_mm:.1f} mm  p(abnormal) = "
              f"{float(result.prob[z]):.2f}  yellow: infection outline", fill="white", font=small)
    # legend: the colour bar with its scale
    bar_x, bar_top, bar_h = image_w + 24, top + 10, max(image_h - 20, 10)
    ramp = jet[np.linspace(255, 0, bar_h).astype(np.uint8)]
    canvas.paste(Image.fromarray(np.repeat(ramp[:, None], 16, axis=1)), (bar_x, bar_top))
    for value in (0.0, 0.5, 1.0):
        y = bar_top + int(round((1.0 - value) * (bar_h - 1)))
        draw.text((bar_x + 20, y - 7), f"{value:.1f}", fill="white", font=small)
    draw.text((bar_x - 6, bar_top + bar_h + 2), "Grad-CAM", fill="white", font=small)
    return np.asarray(canvas)


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
