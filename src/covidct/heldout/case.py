"""`generate_heldout_case`: one held-out-family chest CT with its lung and infection masks.

The case is built on a fine grid (slices of slice_mm / per_slice, <= ~2.5 mm): anatomy,
parenchyma, confounders, COVID-19 lesions, then vessels and airways composited on top;
the scanner model then forms the output slices. Masks on the output grid are the
majority of the fine sub-slices each slice covers; truth.json holds the same keys as
the training family's (`covidct.synth.case.volume_truth`) plus the confounders and lesions.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from scipy import ndimage

from covidct.heldout.anatomy import ARM_MAX_MM, Chest, Layout, build_chest, make_layout
from covidct.heldout.confounders import FINDINGS
from covidct.heldout.fields import Grid, smooth_field, tube_profile
from covidct.heldout.lesions import add_covid
from covidct.heldout.params import HeldoutParams, Resolved, resolve
from covidct.heldout.scanner import apply_scanner, slice_profile
from covidct.synth.case import SynthCase, volume_truth
from covidct.volume import Volume

GENERATOR = "covidct.heldout v1"
FINE_MAX_MM = 2.5
FOV_MAX_MM = 500.0


def _grids(p: Resolved, lay: Layout) -> tuple[Grid, int, float]:
    """(fine grid, sub-slices per output slice, pixel mm)."""
    z_low = min(lay.z_dome) - 115.0
    z_high = lay.z_apex + 30.0
    n_out = int(math.ceil((z_high - z_low) / p.slice_mm))
    per = max(1, int(math.ceil(p.slice_mm / FINE_MAX_MM - 1e-6)))
    # the field of view: the body with its arms, at most 500 mm (arms may be cut off)
    half = min(lay.a + (2 * ARM_MAX_MM + 16.0 if p.arms_down else 0.0) + 12.0, FOV_MAX_MM / 2)
    pixel = 2 * half / p.matrix
    dz = p.slice_mm / per
    grid = Grid((n_out * per, p.matrix, p.matrix), (dz, pixel, pixel),
                (z_low + dz / 2, -half + pixel / 2, -half + pixel / 2))
    return grid, per, pixel


def _parenchyma(chest: Chest, grid: Grid, p: Resolved, rng: np.random.Generator) -> np.ndarray:
    hu = chest.hu.copy()
    inside = chest.lung > 0
    _, y, _ = grid.mesh()
    front = -chest.layout.cav_b
    slope = p.gravity_hu / (2 * chest.layout.cav_b)
    tex = smooth_field(rng, grid, 5.0)
    base = p.lung_hu + slope * (y - front) + 10.0 * tex
    hu[inside] = np.broadcast_to(base, hu.shape)[inside]
    return hu


def _vessels_airways(hu: np.ndarray, lung: np.ndarray, grid: Grid, lay: Layout,
                     blood_hu: float, no_vessels: np.ndarray,
                     rng: np.random.Generator) -> None:
    """Composite vessels (two calibres) and airways onto the lung, in place."""
    z, y, x = grid.mesh()
    d_hilum = np.full(lung.shape, 1e4, np.float32)
    for side, (hz, hy, hx) in enumerate(lay.hilum, start=1):
        d = np.sqrt((z - hz) ** 2 + (y - hy) ** 2 + (x - hx) ** 2)
        d_hilum = np.where(lung == side, d, d_hilum)
    inside = lung > 0
    frac = np.zeros(lung.shape, np.float32)
    for corr, r_min, r_gain, reach in ((24.0, 1.0, 3.6, 55.0), (9.0, 0.45, 0.7, 90.0)):
        f1, f2 = smooth_field(rng, grid, corr), smooth_field(rng, grid, corr)
        radius = r_min + r_gain * np.exp(-d_hilum / reach)
        frac = np.maximum(frac, tube_profile(f1, f2, corr, radius))
    frac *= inside * (1.0 - no_vessels)
    hu[...] = hu * (1 - frac) + frac * blood_hu
    f1, f2 = smooth_field(rng, grid, 30.0), smooth_field(rng, grid, 30.0)
    near = inside & (d_hilum < 110.0)
    r_lumen = 0.8 + 3.2 * np.exp(-d_hilum / 40.0)
    wall = tube_profile(f1, f2, 30.0, r_lumen + rng.uniform(0.8, 1.4)) * near
    lumen = tube_profile(f1, f2, 30.0, r_lumen) * near
    hu[...] = hu * (1 - wall) + wall * rng.uniform(-120.0, 0.0)
    hu[...] = hu * (1 - lumen) + lumen * -985.0


def _majority(fine: np.ndarray, per: int) -> np.ndarray:
    nz = fine.shape[0] // per
    return fine[: nz * per].reshape(nz, per, *fine.shape[1:]).mean(axis=1) >= 0.5


def generate_heldout_case(seed: int, params: HeldoutParams | None = None) -> SynthCase:
    """One held-out-family case; the same (seed, params) always gives the same case.

    Returns a `covidct.synth.case.SynthCase` (ct Volume in HU, int16; lung uint8 1 right
    / 2 left; infection uint8 0/1; truth dict) so `covidct.synth.write_case` writes it in
    the training family's layout.
    """
    started = time.perf_counter()
    p = resolve(seed, params or HeldoutParams())
    r_anat, r_par, r_find, r_covid, r_vessel, r_scan = (
        np.random.default_rng(s) for s in np.random.SeedSequence([int(seed), 12]).spawn(6))
    lay = make_layout(p, r_anat)
    grid, per, pixel = _grids(p, lay)
    chest = build_chest(p, grid, lay, r_anat)
    hu = _parenchyma(chest, grid, p, r_par)
    lung = chest.lung.copy()
    no_vessels = np.zeros(lung.shape, np.float32)
    spacing = grid.spacing

    def pleural_distance() -> np.ndarray:
        """mm to the lung surface: computed in the lung's bounding box on a grid of
        >= 3 mm steps and repeated back (an approximation to a step)."""
        out = np.zeros(lung.shape, np.float32)
        nz_idx = np.nonzero(lung)
        if nz_idx[0].size == 0:
            return out
        box = tuple(slice(max(int(i.min()) - 1, 0), int(i.max()) + 2) for i in nz_idx)
        steps = [max(1, int(round(3.0 / s))) for s in spacing]
        sub = lung[box] > 0
        coarse = ndimage.distance_transform_edt(
            sub[:: steps[0], :: steps[1], :: steps[2]],
            sampling=[s * f for s, f in zip(spacing, steps, strict=True)]).astype(np.float32)
        for axis, f in enumerate(steps):
            coarse = np.repeat(coarse, f, axis=axis)
        full = coarse[: sub.shape[0], : sub.shape[1], : sub.shape[2]]
        out[box] = np.where(sub, full, 0.0)
        return out

    d_pleura = pleural_distance()
    for name in sorted(p.confounders, key=lambda n: n != "effusion"):  # effusion first
        air = FINDINGS[name](hu, lung, d_pleura, grid, r_find)
        if air is not None:
            no_vessels = np.maximum(no_vessels, air)
        if name == "effusion":
            d_pleura = pleural_distance()
    lesions: list[dict[str, Any]] = []
    infection = np.zeros(lung.shape, bool)
    if p.covid:
        infection, lesions = add_covid(hu, lung, d_pleura, grid, p.severity, r_covid)
    _vessels_airways(hu, lung, grid, lay, chest.blood_hu, no_vessels, r_vessel)
    del d_pleura, no_vessels
    out_lung = np.zeros((grid.shape[0] // per, *grid.shape[1:]), np.uint8)
    for side in (1, 2):
        out_lung[_majority(lung == side, per)] = side
    out_inf = (_majority(infection & (lung > 0), per) & (out_lung > 0)).astype(np.uint8)
    image = slice_profile(hu, spacing[0], p.slice_mm, per, r_scan)
    image = apply_scanner(image, pixel, p.kernel, p.noise_hu, p.dose_streaks, p.cupping_hu,
                          p.hu_offset, r_scan)
    if r_scan.random() < 0.6:  # reconstruction circle
        _, yy, xx = grid.mesh()
        image[:, (yy[0] ** 2 + xx[0] ** 2) > (p.matrix * pixel / 2) ** 2] = -1024.0
    ct_hu = np.rint(np.clip(image, -1024, 3071)).astype(np.int16)
    z_first = grid.origin[0] + (per - 1) / 2.0 * spacing[0]
    ct = Volume.from_spacing(ct_hu, (p.slice_mm, pixel, pixel),
                             (grid.origin[2], grid.origin[1], z_first),
                             metadata={"format": "synthetic", "source_path": None,
                                       "patient_id": f"HELDOUT{seed:010d}",
                                       "series_description": "covidct held-out family CT",
                                       "kernel": p.kernel, "slice_thickness_mm": p.slice_mm})
    truth = {**volume_truth(ct, out_lung, out_inf), "family": "heldout",
             "confounders": list(p.confounders), "findings": list(p.confounders),
             "lesions": lesions, "params": p.as_dict(), "generator": GENERATOR,
             "generation_s": round(time.perf_counter() - started, 2)}
    return SynthCase(ct=ct, lung=out_lung, infection=out_inf, truth=truth)
