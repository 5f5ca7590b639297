"""The analytic torso: body outline, chest wall, lungs, mediastinum, heart, spine, abdomen.

Shapes are superellipses and ellipsoids whose sizes follow z profiles, evaluated one
axial sub-slice at a time on the whole (y, x) grid (vectorised, no per-voxel Python).
Tubular structures (great vessels, airways, ribs) are drawn afterwards by `structures`.
All lengths are nominal adult mm scaled by the patient (in-plane) and height (z) factors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from covidct.synth.geometry import Grid, ellipse, local_ellipse, superellipse
from covidct.synth.params import ResolvedParams
from covidct.synth.tissues import T

# z profiles (nominal mm; z = 0 at the top of the right diaphragm dome).
_Z = np.array([-140.0, -80.0, -30.0, 0.0, 60.0, 120.0, 160.0, 195.0, 230.0, 280.0])
_MUSCLE_HALF_WIDTH = np.array([142, 145, 148, 150, 150, 149, 146, 140, 128, 110.0])
_MUSCLE_FRONT = np.array([112, 115, 116, 116, 114, 108, 100, 90, 76, 64.0])
_MUSCLE_BACK = np.array([116, 118, 118, 118, 116, 112, 106, 98, 86, 72.0])
_CAVITY_HALF_WIDTH = np.array([130, 134, 137, 139, 139, 131, 116, 94, 70, 52.0])
_CAVITY_FRONT = np.array([100, 102, 102, 101, 97, 90, 80, 66, 50, 38.0])
CAVITY_POWER = 2.25
_CAVITY_BACK = np.array([80, 82, 82, 82, 80, 76, 70, 62, 52, 40.0])


@dataclass(frozen=True)
class Torso:
    """One patient's body plan (mm). Built by `make_torso`; evaluated by `slice_labels`."""

    s: float  # in-plane scale
    h: float  # z scale
    fat_mm: float
    cy: float  # body centre y
    cx: float
    z_apex: float
    z_recess: float
    dome_r: float
    dome_l: float
    dome_drop: float
    heart: tuple[float, float, float, float, float, float, float]  # x, y, z, rx, ry, rz, angle
    vertebra_period: float
    vertebra_phase: float
    effusion: tuple[float, float]  # (right, left) fluid depth at the base, mm (0 = none)
    thyroid: bool
    pad_mm: float

    def zp(self, z: float, table: np.ndarray) -> float:
        return float(np.interp(z / self.h, _Z, table)) * self.s

    def cavity(self, z: float) -> tuple[float, float, float]:
        return (self.zp(z, _CAVITY_HALF_WIDTH), self.zp(z, _CAVITY_FRONT),
                self.zp(z, _CAVITY_BACK))

    def spine_y(self, z: float) -> float:
        """Centre y of the vertebral body (thoracic kyphosis: furthest back mid-chest)."""
        kyph = 6.0 * np.cos((z / self.h - 80.0) / 220.0 * np.pi)
        return self.cy + self.cavity(z)[2] - 36.0 * self.s + kyph * self.s

    def mediastinum_x(self, z: float) -> float:
        return self.cx + 4.0 * self.s


def make_torso(p: ResolvedParams, rng: np.random.Generator) -> Torso:
    s = p.patient_scale
    h = p.height_scale * p.inspiration
    findings = set(p.findings)
    # drawn whatever the findings, so adding a finding leaves the rest of the case unchanged
    depth = float(rng.uniform(12, 45)) * s
    side = int(rng.integers(0, 3))  # right, left, both
    ratio = float(rng.uniform(0.6, 1.0))
    eff = (0.0, 0.0)
    if "effusion" in findings:
        eff = (depth if side in (0, 2) else 0.0, depth * ratio if side >= 1 else 0.0)
    return Torso(
        s=s, h=h, fat_mm=p.fat_mm, cy=p.body_shift_mm[1], cx=p.body_shift_mm[0],
        z_apex=195.0 * h, z_recess=-72.0 * h,
        dome_r=rng.uniform(-5, 5) * h, dome_l=rng.uniform(-22, -10) * h,
        dome_drop=rng.uniform(95, 120) * h,
        heart=(27.0 * s + rng.uniform(-5, 5), -33.0 * s, 36.0 * h, rng.uniform(58, 68) * s,
               rng.uniform(42, 50) * s, 50.0 * h, np.deg2rad(rng.uniform(-40, -25))),
        vertebra_period=rng.uniform(24, 28) * h, vertebra_phase=rng.uniform(0, 30),
        effusion=eff, thyroid=True, pad_mm=float(rng.uniform(4, 30)),
    )


def diaphragm_z(t: Torso, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Height (mm) of the diaphragm surface: two domes falling towards the chest wall."""
    a = 95.0 * t.s
    ry = (y - (t.cy + 8 * t.s)) / a
    right = t.dome_r - t.dome_drop * (((x - (t.cx - 62 * t.s)) / a) ** 2 + ry**2)
    left = t.dome_l - t.dome_drop * (((x - (t.cx + 62 * t.s)) / a) ** 2 + ry**2)
    return np.maximum(right, left)


def lung_region(t: Torso, z: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Boolean lung space at height z (before tubes carve it): cavity minus the rest."""
    s = t.s
    ac, bf, bb = t.cavity(z)
    inside = superellipse(x, y, t.cx, t.cy, ac, bf, bb, CAVITY_POWER) < 1.0
    inside &= z > np.maximum(diaphragm_z(t, x, y) + 4.0, t.z_recess)
    # apices: each lung ends in a dome centred postero-medially
    cap_h = 95.0 * t.h
    z_cap = t.z_apex - cap_h
    if z > z_cap:
        frac = np.sqrt(max(0.0, 1.0 - ((z - z_cap) / cap_h) ** 2))
        side = np.where(x < t.mediastinum_x(z), -1.0, 1.0)
        inside &= ellipse(x, y, t.cx + side * 50 * s, t.cy + 18 * s, 85 * s * frac + 1e-3,
                          75 * s * frac + 1e-3) < 1.0
    # mediastinum: sternum to spine; narrow in front (anterior junction), wide behind
    xm = t.mediastinum_x(z)
    zn = z / t.h
    w_mid = float(np.interp(zn, [-60, 0, 60, 100, 140, 180, 230],
                            [18, 20, 22, 28, 30, 22, 20])) * s
    w_front = (4.0 if zn > 95 else 12.0) * s
    ramp = np.clip((y - (t.cy - bf)) / (50.0 * s), 0.0, 1.0)
    inside &= ~(np.abs(x - xm) < w_front + (w_mid - w_front) * ramp**1.5)
    # spine and paravertebral soft tissue
    vy = t.spine_y(z)
    inside &= ~(superellipse(x, y, t.cx, vy + 6 * s, 32 * s, 24 * s, 60 * s, 2.4) < 1.0)
    # heart with its epicardial fat; below its equator, its footprint down to the diaphragm
    hx, hy, hz, rx, ry, rz, ang = t.heart
    dz = (z - hz) / rz
    if dz < 1.0:
        scale = 1.0 if dz < 0 else np.sqrt(1.0 - dz * dz)
        win, r = local_ellipse(x, y, hx, hy, rx * scale + 6, ry * scale + 6, ang)
        inside[win] &= r >= 1.0
    return inside


def effusion_region(t: Torso, z: float, x: np.ndarray, y: np.ndarray,
                    lung: np.ndarray) -> np.ndarray:
    """Part of the lung space taken by pleural fluid (flat level in the supine patient)."""
    out = np.zeros_like(lung)
    _, _, bb = t.cavity(z)
    rise = (z - t.z_recess) / (110.0 * t.h)  # the layer thins upwards
    for side, depth in zip((-1, 1), t.effusion, strict=True):
        if depth <= 0 or rise >= 1:
            continue
        level = t.cy + bb - depth * (1.0 - rise) ** 0.7
        half = (x < t.mediastinum_x(z)) if side == -1 else (x >= t.mediastinum_x(z))
        out |= lung & half & (y > level)
    return out


def slice_labels(t: Torso, grid: Grid, z: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Tissue codes (ny, nx) of one axial sub-slice at height z."""
    s = t.s
    lab = np.zeros((grid.ny, grid.nx), dtype=np.uint8)
    am = t.zp(z, _MUSCLE_HALF_WIDTH)
    mf, mb = t.zp(z, _MUSCLE_FRONT), t.zp(z, _MUSCLE_BACK)
    fat = t.fat_mm * float(np.interp(z / t.h, [-140, 150, 280], [1.2, 1.0, 0.6]))
    outer = superellipse(x, y, t.cx, t.cy, am + fat, mf + 0.8 * fat, mb + 0.45 * fat, 2.3)
    _table(t, lab, x, y, mb + 0.45 * fat)
    body = outer < 1.0
    lab[body] = T.FAT
    lab[body & (outer > (1.0 - 2.0 / (am + fat)) ** 2.3)] = T.SKIN
    lab[superellipse(x, y, t.cx, t.cy, am, mf, mb, 2.3) < 1.0] = T.MUSCLE
    ac, bf, bb = t.cavity(z)
    cavity = superellipse(x, y, t.cx, t.cy, ac, bf, bb, CAVITY_POWER) < 1.0
    lab[cavity] = T.MED_FAT
    _abdomen(t, lab, z, x, y, cavity)
    _heart(t, lab, z, x, y)
    lung = lung_region(t, z, x, y)
    if any(d > 0 for d in t.effusion):
        eff = effusion_region(t, z, x, y, lung)
        lab[eff] = T.EFFUSION
        lung &= ~eff
    side = np.broadcast_to(np.where(x < t.mediastinum_x(z), T.LUNG_R, T.LUNG_L), lab.shape)
    lab[lung] = side[lung]
    _spine(t, lab, z, x, y)
    _sternum(t, lab, z, x, y)
    _scapulae(t, lab, z, x, y)
    if t.thyroid and 175 * t.h < z < 235 * t.h:
        for side in (-1, 1):
            win, r = local_ellipse(x, y, t.cx + side * 18 * s, t.cy - bf + 18 * s, 10 * s,
                                   14 * s)
            view = lab[win]
            view[(r < 1) & (view == T.MED_FAT)] = T.THYROID
    return lab


def _table(t: Torso, lab: np.ndarray, x: np.ndarray, y: np.ndarray, back: float) -> None:
    top = t.cy + back + t.pad_mm - 0.0009 * (x - t.cx) ** 2 * (t.s**-1)
    width = np.abs(x - t.cx) < 230
    shell = 3.0
    core = 28.0
    yy = y - top
    lab[width & (yy > -t.pad_mm + 1) & (yy <= 0)] = T.FOAM  # mattress
    lab[width & (yy > 0) & (yy < shell)] = T.TABLE
    lab[width & (yy >= shell) & (yy < shell + core)] = T.FOAM
    lab[width & (yy >= shell + core) & (yy < 2 * shell + core)] = T.TABLE


def _abdomen(t: Torso, lab: np.ndarray, z: float, x: np.ndarray, y: np.ndarray,
             cavity: np.ndarray) -> None:
    s = t.s
    below = cavity & (z < diaphragm_z(t, x, y))
    if not below.any():
        return
    lab[below] = T.MUSCLE  # the diaphragm, then organs below it
    organs = below & (z < diaphragm_z(t, x, y) - 4.0)
    lab[organs] = T.ABDOMEN
    liver = organs & (x < t.cx + 30 * s - 0.5 * (y - t.cy))
    lab[liver] = T.LIVER
    hz = z / t.h
    st = ((x - (t.cx + 68 * s)) / (48 * s)) ** 2 + ((y - (t.cy - 5 * s)) / (46 * s)) ** 2 \
        + ((hz + 45) / 42) ** 2 < 1
    st &= organs
    lab[st] = T.STOMACH
    lab[st & (y < t.cy - 18 * s)] = T.GAS  # supine: gas rises anteriorly, flat level
    sp = ((x - (t.cx + 92 * s)) / (30 * s)) ** 2 + ((y - (t.cy + 42 * s)) / (45 * s)) ** 2 \
        + ((hz + 60) / 50) ** 2 < 1
    lab[sp & organs] = T.SPLEEN


def _heart(t: Torso, lab: np.ndarray, z: float, x: np.ndarray, y: np.ndarray) -> None:
    hx, hy, hz, rx, ry, rz, ang = t.heart
    dz = (z - hz) / rz
    if abs(dz) >= 1.0:
        return
    scale = np.sqrt(1.0 - dz * dz)
    win, r = local_ellipse(x, y, hx, hy, rx * scale + 5, ry * scale + 5, ang)
    view = lab[win]
    view[r < 1.0] = T.MED_FAT
    inner = ellipse(x[:, win[1]], y[win[0], :], hx, hy, rx * scale, ry * scale, ang)
    view[inner < 1.0] = T.HEART


def _bone(lab: np.ndarray, x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float,
          ay: float, cortex_frac: float, angle: float = 0.0) -> None:
    """An elliptic bone: cortex shell and marrow (cortex_frac of the radius thick)."""
    win, r = local_ellipse(x, y, cx, cy, ax, ay, angle)
    view = lab[win]
    view[r < 1.0] = T.CORTEX
    view[r < 1.0 - cortex_frac] = T.MARROW


def _spine(t: Torso, lab: np.ndarray, z: float, x: np.ndarray, y: np.ndarray) -> None:
    s = t.s
    vy = t.spine_y(z)
    zn = z / t.h
    rv = float(np.interp(zn, [-140, 0, 200, 280], [22, 19, 14, 12])) * s
    phase = (z + t.vertebra_phase) % t.vertebra_period
    if phase < 5.0 * t.h:
        win, r = local_ellipse(x, y, t.cx, vy, rv * 1.12, rv)
        lab[win][r < 1.0] = T.DISC
    else:
        _bone(lab, x, y, t.cx, vy, rv * 1.12, rv, 1.8 / rv)
    canal_y = vy + rv + 8 * s
    _bone(lab, x, y, t.cx, canal_y, 13 * s, 12 * s, 0.45)
    # transverse processes, spinous process (tilted down: shifts back in the lower part)
    lean = (phase / t.vertebra_period) * 10 * s
    for side in (-1, 1):
        _bone(lab, x, y, t.cx + side * 24 * s, canal_y + 2 * s, 14 * s, 5 * s, 0.4,
              side * 0.35)
    _bone(lab, x, y, t.cx, canal_y + 22 * s + lean, 4 * s, 13 * s, 0.45)
    win, r = local_ellipse(x, y, t.cx, canal_y, 7 * s, 6.5 * s)
    lab[win][r < 1.0] = T.CORD


def _sternum(t: Torso, lab: np.ndarray, z: float, x: np.ndarray, y: np.ndarray) -> None:
    s, zn = t.s, z / t.h
    if not -5 < zn < 165:
        return
    _, bf, _ = t.cavity(z)
    width = 26 if zn > 125 else 15
    _bone(lab, x, y, t.cx, t.cy - bf - 5 * s, width * s, 6 * s, 0.25)


def _scapulae(t: Torso, lab: np.ndarray, z: float, x: np.ndarray, y: np.ndarray) -> None:
    """Scapular blades: thin bony plates on the posterolateral chest wall."""
    s, zn = t.s, z / t.h
    if not 95 < zn < 215:
        return
    ac, bf, bb = t.cavity(z)
    lo = superellipse(x, y, t.cx, t.cy, ac + 9 * s, bf, bb + 9 * s, CAVITY_POWER)
    hi = superellipse(x, y, t.cx, t.cy, ac + 14 * s, bf, bb + 14 * s, CAVITY_POWER)
    dy = y - t.cy
    ratio = np.abs(x - t.cx) / np.maximum(dy, 1e-3)  # tan of the angle from the back
    inner = 0.45 + 0.25 * np.clip((zn - 95) / 60, 0, 1)  # the blade widens upwards
    blade = (lo > 1.0) & (hi < 1.0) & (dy > 0) & (ratio > inner) & (ratio < 2.2)
    lab[blade] = T.CORTEX
