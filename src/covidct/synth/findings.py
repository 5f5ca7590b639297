"""Non-COVID findings inside the lung that must not count as infection.

A solid nodule, centrilobular/paraseptal emphysema (upper-zone low attenuation) and a
linear (plate) atelectasis. Pleural effusion changes the lung boundary and lives in
`anatomy`. None of these enter the infection mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from covidct.synth.anatomy import Torso
from covidct.synth.geometry import CoarseField, Grid, coarse_field
from covidct.synth.lesions import pleural_distance
from covidct.synth.tissues import T
from covidct.synth.trees import lung_points


@dataclass(frozen=True)
class Findings:
    nodules: tuple[tuple[float, float, float, float, float], ...]  # x, y, z, radius, HU
    emphysema: CoarseField | None
    emphysema_threshold: float
    plates: tuple[tuple[np.ndarray, np.ndarray, float, float, float], ...]  # c, n, L, w, HU
    torso: Torso

    def apply(self, par: np.ndarray, x: np.ndarray, y: np.ndarray, z: float) -> np.ndarray:
        """Parenchyma HU with the findings, for lung pixels at (x, y, z)."""
        out = par
        if self.emphysema is not None:
            t = self.torso
            upper = (z - t.z_recess) / (t.z_apex - t.z_recess)
            e = self.emphysema.sample(x, y, z) + 1.2 * upper
            holes = np.clip((e - self.emphysema_threshold) / 0.25, 0, 1)
            out = out * (1 - holes) + (-975.0) * holes
        for cx, cy, cz, r, hu in self.nodules:
            if abs(z - cz) < r:
                rr = np.sqrt(r * r - (z - cz) ** 2)
                inside = (x - cx) ** 2 + (y - cy) ** 2 < rr * rr
                out = np.where(inside, hu, out)
        for c, n, length, width, hu in self.plates:
            rel_z = z - c[2]
            if abs(rel_z) > length:
                continue
            dist = np.abs((x - c[0]) * n[0] + (y - c[1]) * n[1] + rel_z * n[2])
            along = np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + rel_z**2)
            plate = (dist < width / 2) & (along < length)
            out = np.where(plate, hu, out)
        return out


def make_findings(t: Torso, labels: np.ndarray, grid: Grid, names: tuple[str, ...],
                  rng: np.random.Generator) -> Findings:
    nodules, plates = [], []
    emph, emph_thr = None, 0.0
    dist = pleural_distance(labels, grid) if names else None
    if "nodule" in names:
        for _ in range(int(rng.integers(1, 3))):
            r = float(rng.uniform(3.0, 11.0))
            pts = lung_points(labels, grid, int(rng.choice([T.LUNG_R, T.LUNG_L])), 400, rng)
            d = dist.sample(pts[:, 0], pts[:, 1], pts[:, 2]) if len(pts) else np.zeros(0)
            ok = pts[d > r + 4]
            if len(ok):
                x, y, z = ok[0]
                nodules.append((float(x), float(y), float(z), r, float(rng.uniform(10, 60))))
    if "emphysema" in names:
        emph = coarse_field(rng, grid, 2.0, rng.uniform(1.5, 3.0))
        emph_thr = float(rng.uniform(2.0, 2.8))
    if "atelectasis" in names:
        for _ in range(int(rng.integers(1, 3))):
            pts = lung_points(labels, grid, int(rng.choice([T.LUNG_R, T.LUNG_L])), 400, rng)
            low = pts[pts[:, 2] < np.quantile(pts[:, 2], 0.35)] if len(pts) else pts
            if not len(low):
                continue
            c = low[0]
            angle = rng.uniform(0, np.pi)  # a plate seen edge-on in axial slices: a line
            n = np.array([np.cos(angle), np.sin(angle), rng.normal(0, 0.3)])
            n /= np.linalg.norm(n)
            plates.append((c, n, float(rng.uniform(15, 35)), float(rng.uniform(2.0, 4.0)),
                           float(rng.uniform(-150, 10))))
    return Findings(tuple(nodules), emph, emph_thr, tuple(plates), t)
