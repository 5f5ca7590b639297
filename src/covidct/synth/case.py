"""`generate_case`: one synthetic chest CT with its lung and infection masks and truth."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from covidct.synth.anatomy import Torso, make_torso, slice_labels
from covidct.synth.findings import make_findings
from covidct.synth.geometry import Grid, coarse_field
from covidct.synth.lesions import make_covid
from covidct.synth.params import ResolvedParams, SynthParams, resolve_params
from covidct.synth.render import Lungs, Scene, render_stack
from covidct.synth.scanner import apply_scanner
from covidct.synth.structures import draw_structures
from covidct.synth.tissues import T, hu_table
from covidct.synth.trees import draw_airways, draw_vessels, grow_tree, lung_points, node_offsets
from covidct.volume import Volume

logger = logging.getLogger(__name__)

# A slice is positive when its infection covers >= 0.5% of its lung and >= 20 pixels.
SLICE_MIN_FRACTION = 0.005
SLICE_MIN_PIXELS = 20
GENERATOR_VERSION = "1"
# Territory points per vascular tree: sets how many branches reach the periphery.
TREE_POINTS = 2600


@dataclass(frozen=True)
class SynthCase:
    """A synthetic case: CT, masks on the CT grid, and the ground truth."""

    ct: Volume
    lung: np.ndarray  # uint8 (z, y, x): 0 background, 1 right, 2 left
    infection: np.ndarray  # uint8 (z, y, x): 0 / 1, inside the lung
    truth: Mapping[str, Any]


def _grid(p: ResolvedParams, t: Torso) -> tuple[Grid, float]:
    """The fine grid and the z (mm) of the first output slice centre."""
    extent = p.n_slices * p.slice_mm
    z_top_wanted = t.z_apex + 20.0 * t.h
    lung_span = z_top_wanted - (t.z_recess - 20.0 * t.h)
    if extent >= lung_span:
        z_first = z_top_wanted - extent + p.slice_mm / 2
    else:  # a short scan: centre it on the lungs
        z_first = (z_top_wanted + t.z_recess) / 2 - extent / 2 + p.slice_mm / 2
    dz = p.slice_mm / p.fine_per_slice
    fov = p.matrix * p.pixel_mm
    origin_xy = -fov / 2 + p.pixel_mm / 2
    grid = Grid(nz=p.n_slices * p.fine_per_slice, ny=p.matrix, nx=p.matrix, dz=dz,
                dy=p.pixel_mm, dx=p.pixel_mm, z0=z_first - p.slice_mm / 2 + dz / 2,
                x0=origin_xy, y0=origin_xy)
    return grid, z_first


def _streams(seed: int, n: int) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in np.random.SeedSequence([int(seed), 1]).spawn(n)]


def generate_case(seed: int, params: SynthParams | None = None) -> SynthCase:
    """Generate one case; the same (seed, params) always gives the same case."""
    started = time.perf_counter()
    p = resolve_params(seed, params or SynthParams())
    r_anat, r_tree, r_lung, r_covid, r_find, r_scan = _streams(seed, 6)
    torso = make_torso(p, r_anat)
    grid, z_first = _grid(p, torso)
    x1, y1 = grid.xy()
    labels = np.empty(grid.shape, dtype=np.uint8)
    for k in range(grid.nz):
        labels[k] = slice_labels(torso, grid, grid.z_of(k), x1, y1)
    hila = draw_structures(torso, labels, grid, r_anat)
    vessel = np.zeros(grid.shape, dtype=np.uint8)
    airway = np.zeros(grid.shape, dtype=np.uint8)
    lung_now = labels >= T.LUNG_R
    for side, code in enumerate((T.LUNG_R, T.LUNG_L)):
        pts = lung_points(labels, grid, int(code), TREE_POINTS, r_tree)
        if len(pts) < 10:
            continue
        s = torso.s
        art = grow_tree(hila.bronchus[side], pts, 7.0 * s, r_tree)
        draw_airways(art, airway, labels, grid)
        off = node_offsets(art, art.radius * 1.9 + 0.6, r_tree)
        draw_vessels(art, vessel, labels, grid, offset=off)
        pts_v = lung_points(labels, grid, int(code), TREE_POINTS, r_tree)
        vein = grow_tree(hila.vein[side], pts_v, 6.5 * s, r_tree)
        draw_vessels(vein, vessel, labels, grid)
    # trees drawn outside the lung (through the mediastinum) do not show there
    outside = ~lung_now
    vessel[outside] = 0
    airway[outside] = 0
    lut = hu_table(r_lung)
    lungs = Lungs(base_hu=float(r_lung.uniform(-950, -900) + 60 * (1 - p.inspiration)),
                  gradient_hu=float(r_lung.uniform(30, 90)),
                  texture=coarse_field(r_lung, grid, 2.0, 1.0),
                  texture_hu=float(r_lung.uniform(10, 22)),
                  bronchial_wall_hu=float(r_lung.uniform(-380, -150)))
    covid = make_covid(torso, labels, grid, p.severity, r_covid) if p.covid else None
    findings = make_findings(torso, labels, grid, tuple(f for f in p.findings if f != "effusion"),
                             r_find) if p.findings else None
    scene = Scene(torso, grid, labels, vessel, airway, lut, lungs, covid, findings)
    hu, lung, infection = render_stack(scene, p.n_slices, p.fine_per_slice)
    del labels, vessel, airway
    apply_scanner(hu, p.pixel_mm, p.kernel, p.noise_hu, r_scan)
    if p.fov_circle:
        x, y = grid.xy()
        radius = p.matrix * p.pixel_mm / 2
        hu[:, (x**2 + y**2) > radius**2] = -1024.0
    np.clip(hu, -1024, 3071, out=hu)
    ct_hu = np.rint(hu).astype(np.int16)
    origin = (grid.x0, grid.y0, z_first)
    ct = Volume.from_spacing(ct_hu, (p.slice_mm, p.pixel_mm, p.pixel_mm), origin,
                             metadata={"format": "synthetic", "source_path": None,
                                       "patient_id": f"SYNTH{seed:010d}",
                                       "series_description": "covidct synthetic chest CT",
                                       "kernel": p.kernel, "slice_thickness_mm": p.slice_mm})
    truth = make_truth(ct, lung, infection, p, time.perf_counter() - started)
    logger.debug("case seed=%d generated in %.1f s", seed, truth["generation_s"])
    return SynthCase(ct=ct, lung=lung, infection=infection, truth=truth)


def slice_labels_rule(lung: np.ndarray, infection: np.ndarray) -> np.ndarray:
    """Per-slice truth: infection area >= 0.5% of the slice's lung area and >= 20 pixels."""
    lung_px = (lung > 0).sum(axis=(1, 2))
    inf_px = ((infection > 0) & (lung > 0)).sum(axis=(1, 2))
    return ((inf_px >= SLICE_MIN_PIXELS) & (inf_px >= SLICE_MIN_FRACTION * lung_px)
            & (lung_px > 0)).astype(np.uint8)


def volume_truth(ct: Volume, lung: np.ndarray, infection: np.ndarray) -> dict[str, Any]:
    """The truth.json keys every case has: lung and infection volumes (cm3) per side, slice
    labels (slice_labels_rule) and the grid. lung: 1 right / 2 left; infection: > 0."""
    cm3 = ct.voxel_volume_mm3 / 1000.0
    right, left = int((lung == 1).sum()), int((lung == 2).sum())
    inf = infection > 0
    inf_r, inf_l = int((inf & (lung == 1)).sum()), int((inf & (lung == 2)).sum())
    labels = slice_labels_rule(lung, infection)
    return {
        "label": "covid" if inf_r + inf_l > 0 else "negative",
        "lung_volume_cm3": (right + left) * cm3,
        "lung_volume_right_cm3": right * cm3,
        "lung_volume_left_cm3": left * cm3,
        "infection_volume_cm3": (inf_r + inf_l) * cm3,
        "infection_volume_right_cm3": inf_r * cm3,
        "infection_volume_left_cm3": inf_l * cm3,
        "infection_fraction": (inf_r + inf_l) / max(right + left, 1),
        "slice_labels": labels.tolist(),
        "positive_slices": int(labels.sum()),
        "lung_slices": int(((lung > 0).sum(axis=(1, 2)) > 0).sum()),
        "slice_rule": {"min_fraction": SLICE_MIN_FRACTION, "min_pixels": SLICE_MIN_PIXELS},
        "voxel_volume_mm3": ct.voxel_volume_mm3,
        "shape": list(ct.shape),
        "spacing_mm": list(ct.spacing_mm),
    }


def make_truth(ct: Volume, lung: np.ndarray, infection: np.ndarray, p: ResolvedParams,
               seconds: float) -> dict[str, Any]:
    truth = volume_truth(ct, lung, infection)
    return {
        **truth,
        "label": truth["label"] if p.covid else "negative",
        "findings": list(p.findings),
        "params": p.as_dict(),
        "generator": f"covidct.synth v{GENERATOR_VERSION}",
        "generation_s": round(seconds, 2),
    }
