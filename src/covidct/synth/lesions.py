"""COVID-19 pneumonia: ground glass, crazy paving and consolidation inside the lungs.

One smooth random "propensity" field covers the chest; adding terms for subpleural,
posterior and lower-zone position and thresholding it at the quantile that gives the
drawn severity (the same fraction in each lung, so disease is bilateral) yields
multifocal, peripheral, posterior and basal patches, from a few cm3 to most of the lung.
How far a voxel lies above the threshold sets its density: ground glass at the edges,
consolidation in the cores. Ground glass is added to the parenchyma before vessels are
mixed in, so vessels stay visible through it; bronchi stay air (air bronchograms).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from covidct.synth.anatomy import Torso
from covidct.synth.geometry import CoarseField, Grid, coarse_field
from covidct.synth.tissues import T
from covidct.synth.trees import lung_points


def pleural_distance(labels: np.ndarray, grid: Grid, step_mm: float = 4.0) -> CoarseField:
    """Distance (mm) from each point of the lung to its surface, on a coarse grid."""
    zi = np.arange(grid.z0, grid.z_of(grid.nz - 1) + step_mm, step_mm)
    yi = np.arange(grid.y0, grid.y0 + grid.ny * grid.dy, step_mm)
    xi = np.arange(grid.x0, grid.x0 + grid.nx * grid.dx, step_mm)
    k = np.clip(np.rint((zi - grid.z0) / grid.dz).astype(int), 0, grid.nz - 1)
    j = np.clip(np.rint((yi - grid.y0) / grid.dy).astype(int), 0, grid.ny - 1)
    i = np.clip(np.rint((xi - grid.x0) / grid.dx).astype(int), 0, grid.nx - 1)
    lung = labels[np.ix_(k, j, i)] >= T.LUNG_R
    dist = ndimage.distance_transform_edt(lung) * step_mm
    return CoarseField(dist.astype(np.float32), (grid.x0, grid.y0, grid.z0), step_mm)


@dataclass(frozen=True)
class Covid:
    """A case's pneumonia: evaluate with `apply` on the lung pixels of a sub-slice."""

    torso: Torso
    noise: CoarseField
    kind: CoarseField
    septa: CoarseField | None
    dist: CoarseField
    threshold: tuple[float, float]  # right, left
    spread: float
    ggo_hu: float
    consolidation_at: float
    consolidation_hu: float
    septa_hu: float

    def propensity(self, x: np.ndarray, y: np.ndarray, z: np.ndarray | float) -> np.ndarray:
        t = self.torso
        _, bf, bb = t.cavity(float(np.mean(z)))
        post = (y - t.cy) / (bf + bb) * 2.0
        low = (np.asarray(z) - t.z_recess) / (t.z_apex - t.z_recess)
        d = self.dist.sample(x, y, z)
        # subpleural along the chest wall (not the mediastinum): pleural distance x how far
        # out in the chest the point lies
        ac = t.cavity(float(np.mean(z)))[0]
        wall = np.clip(np.abs(x - t.cx) / ac + np.maximum(post, 0) * 0.6, 0, 1)
        return (self.noise.sample(x, y, z) + 1.5 * np.exp(-d / 14.0) * wall**1.5
                + 0.45 * post - 0.8 * low).astype(np.float32)

    def apply(self, par: np.ndarray, x: np.ndarray, y: np.ndarray, z: float,
              right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(parenchyma HU with disease, infection mask) for lung pixels at (x, y, z)."""
        p = self.propensity(x, y, z)
        thr = np.where(right, self.threshold[0], self.threshold[1])
        e = (p - thr) / self.spread
        mask = e > 0
        if not mask.any():
            return par, mask
        em = e[mask]
        out = par.copy()
        # ground glass: denser towards the core of a patch
        gg = self.ggo_hu * (0.55 + 0.45 * np.clip(em / 0.35, 0, 1))
        kind = self.kind.sample(x[mask], y[mask], z)
        gg *= 1.0 + 0.15 * kind
        new = par[mask] + gg
        if self.septa is not None:  # crazy paving: thickened septa where kind is high
            band = self.septa.sample(x[mask], y[mask], z)
            lines = np.exp(-(band / 0.22) ** 2) * np.clip(kind + 0.3, 0, 1)
            new += self.septa_hu * lines
        cons = np.clip((em - self.consolidation_at - 0.3 * kind) / 0.25, 0, 1)
        new = new * (1 - cons) + (self.consolidation_hu + 15 * kind) * cons
        out[mask] = np.minimum(new, 60.0)
        return out, mask


def make_covid(t: Torso, labels: np.ndarray, grid: Grid, severity: float,
               rng: np.random.Generator) -> Covid:
    noise = coarse_field(rng, grid, 4.0, rng.uniform(9.0, 16.0))
    kind = coarse_field(rng, grid, 6.0, 14.0)
    crazy = rng.random() < 0.45
    septa = coarse_field(rng, grid, 2.0, rng.uniform(2.5, 4.0)) if crazy else None
    dist = pleural_distance(labels, grid)
    proto = Covid(t, noise, kind, septa, dist, (0.0, 0.0), 1.0, 0.0, 0.0, 0.0, 0.0)
    thresholds, spreads = [], []
    for code in (T.LUNG_R, T.LUNG_L):
        pts = lung_points(labels, grid, int(code), 6000, rng)
        if len(pts) == 0:
            thresholds.append(np.inf)
            continue
        p = proto.propensity(pts[:, 0], pts[:, 1], pts[:, 2])
        thresholds.append(float(np.quantile(p, 1.0 - severity)))
        spreads.append(float(p.std()))
    return Covid(
        torso=t, noise=noise, kind=kind, septa=septa, dist=dist,
        threshold=(thresholds[0], thresholds[1]),
        spread=float(np.mean(spreads)) if spreads else 1.0,
        ggo_hu=float(rng.uniform(170, 360)),
        # more consolidation in severe cases (later stage)
        consolidation_at=float(rng.uniform(0.25, 0.9) + 0.6 * (0.1 - min(severity, 0.1))),
        consolidation_hu=float(rng.uniform(-120, 30)),
        septa_hu=float(rng.uniform(90, 200)),
    )
