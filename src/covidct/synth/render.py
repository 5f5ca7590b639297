"""Label volume + lung modulations -> HU, averaged from fine sub-slices to thick slices.

Lung parenchyma gets its HU from a posterior (dependent) gradient and a faint texture;
then emphysema, nodules and atelectasis; then COVID disease (which also gives the
infection mask); then vessels are mixed in by their partial-volume fraction and bronchi
are drawn, so vessels stay visible through ground glass and bronchi stay air in
consolidation. Each output slice is the mean of `fine_per_slice` sub-slices (slice
thickness); masks take the majority label of the sub-slices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from covidct.synth.anatomy import Torso
from covidct.synth.findings import Findings
from covidct.synth.geometry import CoarseField, Grid
from covidct.synth.lesions import Covid
from covidct.synth.tissues import T


@dataclass(frozen=True)
class Lungs:
    """Per-case parenchyma parameters."""

    base_hu: float
    gradient_hu: float
    texture: CoarseField
    texture_hu: float
    bronchial_wall_hu: float


@dataclass(frozen=True)
class Scene:
    torso: Torso
    grid: Grid
    labels: np.ndarray  # (nz_fine, y, x) uint8 tissue codes
    vessel: np.ndarray  # (nz_fine, y, x) uint8 vessel fraction * 255 (lung only)
    airway: np.ndarray  # (nz_fine, y, x) uint8 0 / 1 wall / 2 lumen (lung only)
    lut: np.ndarray
    lungs: Lungs
    covid: Covid | None
    findings: Findings | None


def render_subslice(scene: Scene, k: int, x2: np.ndarray, y2: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(HU (y, x) float32, tissue codes, infection bool) of fine sub-slice k (before blur)."""
    lab = scene.labels[k]
    hu = scene.lut[lab]
    infection = np.zeros(lab.shape, dtype=bool)
    lung = lab >= T.LUNG_R
    if not lung.any():
        return hu, lab, infection
    z = scene.grid.z_of(k)
    t, lungs = scene.torso, scene.lungs
    x = x2[lung]
    y = y2[lung]
    _, bf, bb = t.cavity(z)
    depth = np.clip((y - (t.cy - bf)) / (bf + bb), 0, 1)
    par = lungs.base_hu + lungs.gradient_hu * depth**1.5
    par = par + lungs.texture_hu * lungs.texture.sample(x, y, z)
    if scene.findings is not None:
        par = scene.findings.apply(par, x, y, z)
    if scene.covid is not None:
        par, inf = scene.covid.apply(par, x, y, z, lab[lung] == T.LUNG_R)
        infection[lung] = inf
    f = scene.vessel[k][lung].astype(np.float32) / 255.0
    par = par * (1.0 - f) + scene.lut[T.BLOOD] * f
    aw = scene.airway[k][lung]
    # thin intrapulmonary bronchial walls: partial volume keeps them well below soft tissue
    par = np.where(aw == 1, np.maximum(par, lungs.bronchial_wall_hu), par)
    par = np.where(aw == 2, scene.lut[T.AIRWAY_AIR], par)
    hu[lung] = par
    return hu, lab, infection


def render_stack(scene: Scene, n_slices: int, per_slice: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(HU (n, y, x) float32, lung uint8 1 right / 2 left, infection uint8) on the output grid."""
    g = scene.grid
    x1, y1 = g.xy()
    x2, y2 = np.broadcast_arrays(x1, y1)
    hu = np.zeros((n_slices, g.ny, g.nx), dtype=np.float32)
    lung = np.zeros((n_slices, g.ny, g.nx), dtype=np.uint8)
    infection = np.zeros((n_slices, g.ny, g.nx), dtype=np.uint8)
    right = np.zeros((g.ny, g.nx), dtype=np.uint8)
    left = np.zeros_like(right)
    inf = np.zeros_like(right)
    for out in range(n_slices):
        acc = hu[out]
        right[:] = 0
        left[:] = 0
        inf[:] = 0
        for sub in range(per_slice):
            h, lab, infected = render_subslice(scene, out * per_slice + sub, x2, y2)
            acc += h
            right += lab == T.LUNG_R
            left += lab == T.LUNG_L
            inf += infected
        acc /= per_slice
        need = per_slice / 2.0
        lung[out][right >= max(need, 0.5)] = 1
        lung[out][(left >= max(need, 0.5)) & (lung[out] == 0)] = 2
        infection[out] = (inf >= max(need, 0.5)) & (lung[out] > 0)
    return hu, lung, infection
