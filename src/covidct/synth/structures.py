"""Tubular anatomy drawn into the label volume: great vessels, trachea, bronchi, ribs.

Each structure is a polyline of (x, y, z) mm nodes with a radius, painted as balls along
it (`geometry.draw_polyline`). Returns the hilar points where the lung trees start.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from covidct.synth.anatomy import Torso
from covidct.synth.geometry import Grid, draw_polyline
from covidct.synth.tissues import T


@dataclass(frozen=True)
class Hila:
    """Where the intrapulmonary trees start, per side (index 0 right, 1 left), mm."""

    bronchus: tuple[np.ndarray, np.ndarray]
    artery: tuple[np.ndarray, np.ndarray]
    vein: tuple[np.ndarray, np.ndarray]


def _line(*nodes: tuple[float, float, float]) -> np.ndarray:
    """Polyline densified to ~5 mm steps with a Catmull-Rom-like smoothing."""
    pts = np.asarray(nodes, dtype=np.float64)
    out = [pts[0]]
    for a, b in zip(pts[:-1], pts[1:], strict=True):
        n = max(1, int(np.linalg.norm(b - a) / 5.0))
        out.extend(a + (b - a) * (i / n) for i in range(1, n + 1))
    return np.asarray(out)


def _tube(labels: np.ndarray, grid: Grid, nodes: np.ndarray, r: float, code: int,
          envelope_mm: float = 0.0) -> None:
    if envelope_mm > 0:
        draw_polyline(labels, grid, nodes, r + envelope_mm, T.MED_FAT, step_mm=1.0)
    draw_polyline(labels, grid, nodes, r, code, step_mm=0.7)


def draw_structures(t: Torso, labels: np.ndarray, grid: Grid,
                    rng: np.random.Generator) -> Hila:
    s, h, cx, cy = t.s, t.h, t.cx, t.cy
    z_top = grid.z_of(grid.nz - 1) + 20.0
    z_bottom = grid.z0 - 20.0

    def sy(z: float, offset: float) -> float:
        return t.spine_y(z) + offset * s

    # descending aorta beside the spine, arch, ascending aorta from the heart
    desc = [(cx + 22 * s, sy(z, -24), z) for z in np.linspace(125 * h, min(z_bottom, -60 * h), 8)]
    aorta = _line((cx - 2 * s, cy - 20 * s, 60 * h), (cx - 5 * s, cy - 26 * s, 112 * h),
                  (cx + 2 * s, cy - 14 * s, 134 * h), (cx + 16 * s, sy(135 * h, -32), 137 * h),
                  *desc)
    radius = 14.0 * s * rng.uniform(0.9, 1.15)
    _tube(labels, grid, aorta, radius, T.BLOOD, envelope_mm=5.0)
    # aortic branches and SVC up to the neck
    for x_off, y_off in ((-10, -20), (4, -14), (15, -4)):
        _tube(labels, grid, _line((cx + x_off * s, cy + y_off * s, 135 * h),
                                  (cx + x_off * 1.1 * s, cy + y_off * s, z_top)),
              5.0 * s, T.BLOOD, envelope_mm=2.0)
    svc = _line((cx - 28 * s, cy - 18 * s, 62 * h), (cx - 27 * s, cy - 20 * s, 150 * h),
                (cx - 26 * s, cy - 14 * s, z_top))
    _tube(labels, grid, svc, 9.0 * s, T.BLOOD, envelope_mm=3.0)
    # pulmonary trunk and arteries
    trunk = _line((cx + 14 * s, cy - 46 * s, 60 * h), (cx + 14 * s, cy - 26 * s, 92 * h))
    _tube(labels, grid, trunk, 13.0 * s, T.BLOOD, envelope_mm=3.0)
    rpa_end = np.array([cx - 50 * s, cy + 2 * s, 86 * h])
    lpa_end = np.array([cx + 50 * s, cy + 8 * s, 96 * h])
    _tube(labels, grid, _line(trunk[-1], (cx - 20 * s, cy - 12 * s, 92 * h), rpa_end),
          10.0 * s, T.BLOOD, envelope_mm=2.0)
    _tube(labels, grid, _line(trunk[-1], (cx + 34 * s, cy - 6 * s, 100 * h), lpa_end),
          10.0 * s, T.BLOOD, envelope_mm=2.0)
    # pulmonary veins into the left atrium
    la = np.array([cx + 6 * s, cy + 8 * s, 52 * h])
    veins = (np.array([cx - 45 * s, cy + 14 * s, 58 * h]),
             np.array([cx + 45 * s, cy + 16 * s, 62 * h]))
    for v in veins:
        _tube(labels, grid, _line(la, v), 7.0 * s, T.BLOOD, envelope_mm=2.0)
    # oesophagus behind the trachea, down to the stomach
    eso = [(cx + 6 * s, sy(z, -rv_front(t, z) - 10), z) for z in np.linspace(z_top, 0, 12)]
    eso_nodes = _line(*eso, (cx + 40 * s, cy - 5 * s, -40 * h))
    _tube(labels, grid, eso_nodes, 8.0 * s, T.ESOPHAGUS)
    # trachea to the carina, main bronchi to the hila (wall then lumen)
    carina = np.array([cx, sy(105 * h, -rv_front(t, 105 * h) - 32), 105 * h])
    trachea = _line((cx, sy(z_top, -rv_front(t, z_top) - 30), z_top),
                    (cx, sy(160 * h, -rv_front(t, 160 * h) - 31), 160 * h), carina)
    rb = np.array([cx - 42 * s, carina[1] + 12 * s, 84 * h])
    lb = np.array([cx + 44 * s, carina[1] + 16 * s, 90 * h])
    right = _line(carina, (cx - 22 * s, carina[1] + 6 * s, 93 * h), rb)
    left = _line(carina, (cx + 22 * s, carina[1] + 8 * s, 99 * h), lb)
    for nodes, r in ((trachea, 8.5 * s), (right, 6.5 * s), (left, 5.8 * s)):
        _tube(labels, grid, nodes, r + 1.8, T.AIRWAY_WALL, envelope_mm=2.0)
    for nodes, r in ((trachea, 8.5 * s), (right, 6.5 * s), (left, 5.8 * s)):
        draw_polyline(labels, grid, nodes, r, T.AIRWAY_AIR, step_mm=0.7)
    _ribs(t, labels, grid, rng)
    _clavicles(t, labels, grid)
    return Hila(bronchus=(rb, lb), artery=(rpa_end, lpa_end), vein=veins)


def rv_front(t: Torso, z: float) -> float:
    """Vertebral body radius (nominal mm) at z; the trachea sits in front of it."""
    return float(np.interp(z / t.h, [-140, 0, 200, 280], [22, 19, 14, 12]))


def _cavity_point(t: Torso, theta: np.ndarray, z: np.ndarray, side: int,
                  offset_mm: float) -> np.ndarray:
    """Points on the inner chest wall (angle from the posterior midline) pushed out by offset."""
    pts = []
    for th, zz in zip(theta, z, strict=True):
        ac, bf, bb = t.cavity(float(zz))
        sx, cy_ = np.sin(th), np.cos(th)
        b = bb if cy_ > 0 else bf
        r = 1.0 / ((abs(sx) / ac) ** 2.6 + (abs(cy_) / b) ** 2.6) ** (1 / 2.6)
        r += offset_mm
        pts.append((t.cx + side * r * sx, t.cy + r * cy_, zz))
    return np.asarray(pts)


def _ribs(t: Torso, labels: np.ndarray, grid: Grid, rng: np.random.Generator) -> None:
    s, h = t.s, t.h
    for k in range(12):
        head = (188.0 - 21.5 * k) * h
        drop = (30 + 3.5 * k) * h
        bone_end = 0.80 * np.pi if k < 10 else 0.55 * np.pi
        theta = np.linspace(0.12 * np.pi, bone_end, 40)
        frac = (theta - theta[0]) / (np.pi - theta[0])
        z = head + 6 * h * np.sin(frac * np.pi) - drop * frac**1.6
        r_bone = (3.0 if k == 0 else 3.6) * s
        for side in (-1, 1):
            wobble = rng.uniform(-2, 2)
            pts = _cavity_point(t, theta, z + wobble, side, r_bone + 1.5)
            # a rib is taller than thick: two overlapping tubes 4 mm apart in z
            up, down = pts + [0, 0, 2.0 * h], pts - [0, 0, 2.0 * h]
            for p in (up, down):
                draw_polyline(labels, grid, p, r_bone, T.CORTEX, step_mm=0.8)
            for p in (up, down):
                draw_polyline(labels, grid, p, r_bone * 0.6, T.MARROW, step_mm=0.8)
            if k < 10:  # costal cartilage towards the sternum
                th_c = np.linspace(bone_end, 0.95 * np.pi, 10)
                fc = (th_c - theta[0]) / (np.pi - theta[0])
                zc = head - drop * fc**1.6 + (fc - frac[-1]) * 25 * h * (k > 6)
                cart = _cavity_point(t, th_c, zc + wobble, side, r_bone + 1.5)
                draw_polyline(labels, grid, np.vstack([pts[-1:], cart]), r_bone * 0.85,
                              T.CARTILAGE, step_mm=0.8)


def _clavicles(t: Torso, labels: np.ndarray, grid: Grid) -> None:
    s, h = t.s, t.h
    _, bf, _ = t.cavity(195 * h)
    for side in (-1, 1):
        nodes = _line((t.cx + side * 22 * s, t.cy - bf - 10 * s, 192 * h),
                      (t.cx + side * 80 * s, t.cy - bf - 12 * s, 205 * h),
                      (t.cx + side * 150 * s, t.cy - 20 * s, 215 * h))
        draw_polyline(labels, grid, nodes, 7.5 * s, T.CORTEX, step_mm=1.0)
        draw_polyline(labels, grid, nodes, 5.0 * s, T.MARROW, step_mm=1.0)
