"""The held-out family's chest: a superellipse body with the lungs carved out of it.

Built slice by slice from closed-form regions (no shared code with `covidct.synth`'s
phantom): body and fat as superellipses flattened on the table, arms at the sides when
`arms_down`, ribs as a sloped periodic band round the thoracic cavity, spine, heart,
aorta, trachea and main bronchi, liver / stomach / spleen below two domed hemidiaphragms.
The lungs fill the cavity from the apex cap down to the domes, minus the mediastinum.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from covidct.heldout.fields import Grid
from covidct.heldout.params import Resolved

ARM_MAX_MM = 52.0  # arm radius upper bound (the field of view leaves room for it)


class Tissue(IntEnum):
    AIR = 0
    FAT = 1
    MUSCLE = 2
    BONE = 3
    MARROW = 4
    CARTILAGE = 5
    HEART = 6
    BLOOD = 7
    LIVER = 8
    SPLEEN = 9
    STOMACH = 10
    GAS = 11
    ABDOMEN = 12
    TABLE = 13
    AIRWAY = 14
    AIRWAY_WALL = 15
    LUNG = 16


@dataclass(frozen=True)
class Layout:
    """The case's key positions (mm, LPS): z of apex, domes, carina; body half axes."""

    z_apex: float
    z_dome: tuple[float, float]  # right, left
    z_carina: float
    a: float  # outer body half width (with fat)
    b: float  # outer body half depth
    yc: float  # body centre y
    cav_a: float
    cav_b: float
    spine_y: float
    med_half: float
    hilum: tuple[tuple[float, float, float], tuple[float, float, float]]  # (z, y, x) R, L


@dataclass(frozen=True)
class Chest:
    labels: np.ndarray  # uint8 Tissue codes (z, y, x)
    hu: np.ndarray  # float32 HU of every tissue; lung voxels hold 0 (set by the case)
    lung: np.ndarray  # uint8: 0, 1 right, 2 left
    layout: Layout
    blood_hu: float  # vessels, heart chambers, aorta


def make_layout(p: Resolved, rng: np.random.Generator) -> Layout:
    a_muscle = p.body_half_width_mm
    a = a_muscle + p.fat_mm
    b = a_muscle * p.body_ap_ratio + 0.7 * p.fat_mm
    wall = 0.09 * a_muscle
    cav_a, cav_b = a_muscle - wall, a_muscle * p.body_ap_ratio - wall
    z_apex = p.lung_height_mm
    z_dome_r = 0.0 + p.right_dome_rise_mm
    z_carina = z_apex - rng.uniform(0.28, 0.36) * p.lung_height_mm
    hil_z = z_carina - 25.0
    hil_x = 0.42 * cav_a
    return Layout(z_apex=z_apex, z_dome=(z_dome_r, 0.0), z_carina=z_carina, a=a, b=b, yc=0.0,
                  cav_a=cav_a, cav_b=cav_b, spine_y=0.62 * cav_b, med_half=p.mediastinum_half_mm,
                  hilum=((hil_z, 0.05 * cav_b, -hil_x), (hil_z, 0.05 * cav_b, hil_x)))


def _superellipse(x: np.ndarray, y: np.ndarray, a: float, b: float, n: float) -> np.ndarray:
    """|x/a|^n + |y/b|^n (< 1 inside)."""
    return np.abs(x / a) ** n + np.abs(y / b) ** n


def _segment_distance(x: np.ndarray, y: np.ndarray, a: tuple[float, float],
                      b: tuple[float, float]) -> np.ndarray:
    """Distance (mm) of each (x, y) from the segment a-b."""
    ax, ay = a
    bx, by = b
    t = np.clip(((x - ax) * (bx - ax) + (y - ay) * (by - ay))
                / max((bx - ax) ** 2 + (by - ay) ** 2, 1e-6), 0.0, 1.0)
    return np.sqrt((x - ax - t * (bx - ax)) ** 2 + (y - ay - t * (by - ay)) ** 2)


def _dome(lay: Layout, x: np.ndarray, y: np.ndarray, side: int) -> np.ndarray:
    """z (mm) of a hemidiaphragm over (y, x): a dome, lowest at the posterior recess."""
    cx = (-0.5 if side == 0 else 0.5) * lay.cav_a
    r2 = ((x - cx) / (0.55 * lay.cav_a)) ** 2 + ((y + 0.1 * lay.cav_b) / lay.cav_b) ** 2
    return lay.z_dome[side] - 45.0 * r2 - 22.0 * np.clip(y / lay.cav_b, 0, 1)


def build_chest(p: Resolved, grid: Grid, lay: Layout, rng: np.random.Generator) -> Chest:
    """Tissue labels, their HU and the lung sides on `grid` (lay from `make_layout`)."""
    zs, ys, xs = grid.axes()
    y, x = ys[:, None], xs[None, :]
    n = p.superellipse_n
    hu_of = _tissue_hu(p, rng)
    labels = np.zeros(grid.shape, np.uint8)
    lung = np.zeros(grid.shape, np.uint8)
    rib_period = rng.uniform(24.0, 30.0)
    rib_width = rng.uniform(7.0, 11.0)
    rib_phase = rng.uniform(0, rib_period)
    heart_c = (lay.z_dome[1] + rng.uniform(40, 60), -0.12 * lay.cav_b, 0.22 * lay.cav_a)
    heart_r = (rng.uniform(50, 65), 0.45 * lay.cav_b, 0.42 * lay.cav_a)
    aorta_r = rng.uniform(11.0, 16.0)
    z_arch = lay.z_carina + rng.uniform(20, 35)
    dome_r, dome_l = _dome(lay, x, y, 0), _dome(lay, x, y, 1)
    arm_r = rng.uniform(38.0, ARM_MAX_MM)
    for k, z in enumerate(zs):
        lab = np.zeros((grid.shape[1], grid.shape[2]), np.uint8)
        neck = np.clip((z - lay.z_apex - 15.0) / 40.0, 0.0, 1.0)
        a = lay.a * (1 - 0.45 * neck)
        b = lay.b * (1 - 0.2 * neck)
        back = y < 0.85 * b  # flat on the table
        outer = (_superellipse(x, y, a, b, n) <= 1) & back
        muscle = (_superellipse(x, y, a - p.fat_mm, b - 0.7 * p.fat_mm, n) <= 1) & back
        lab[outer] = Tissue.FAT
        lab[muscle] = Tissue.MUSCLE
        table_y = 0.85 * b + 6.0
        lab[(y > table_y) & (y < table_y + 8) & (np.abs(x) < lay.a + 30)] = Tissue.TABLE
        if p.arms_down and z > lay.z_dome[1] - 60:
            for sx in (-1, 1):
                ax = sx * (lay.a + arm_r + 8.0)
                arm = ((x - ax) / arm_r) ** 2 + (y / (arm_r * 1.1)) ** 2
                lab[arm <= 1] = Tissue.FAT
                lab[arm <= 0.75] = Tissue.MUSCLE
                hum = ((x - ax) ** 2 + (y + 5) ** 2)
                lab[hum <= 12.0**2] = Tissue.BONE
                lab[hum <= 8.0**2] = Tissue.MARROW
        # the cavity widens from the apex to the bases
        up = np.clip((z - lay.z_dome[1]) / (lay.z_apex - lay.z_dome[1]), 0.0, 1.0)
        widen = 1.0 - 0.12 * up
        cav_level = _superellipse(x, y - 0.03 * lay.cav_b, lay.cav_a * widen * (1 - 0.5 * neck),
                                  lay.cav_b * (1 - 0.2 * neck), n)
        in_cav = cav_level <= 1
        # ribs: a sloped periodic band just outside the cavity
        ring = (cav_level > 1.0) & (cav_level < 1.0 + 22.0 / lay.cav_a)
        phase = np.mod(z + 0.35 * y - rib_phase, rib_period)
        rib = ring & (phase < rib_width) & (z < lay.z_apex + 25) & (z > lay.z_dome[1] - 80)
        front = (np.abs(x) < 0.25 * lay.cav_a) & (y < 0)
        lab[rib & ~front] = Tissue.BONE
        lab[rib & ~front & (phase > 2.0) & (phase < rib_width - 2.0)] = Tissue.MARROW
        lab[rib & front] = Tissue.CARTILAGE
        sternum = (np.abs(x) < 14) & (y < -lay.cav_b * 0.98) & (y > -lay.cav_b - 14)
        lab[sternum & (z > lay.z_dome[0] - 10) & (z < lay.z_apex)] = Tissue.BONE
        # spine: vertebral body, canal, posterior arch
        vb = (x / 19.0) ** 2 + ((y - lay.spine_y) / 16.0) ** 2 <= 1
        arch = (np.abs(x) < 24) & (y > lay.spine_y + 14) & (y < lay.spine_y + 45)
        canal = (x / 8.0) ** 2 + ((y - lay.spine_y - 24) / 8.0) ** 2 <= 1
        lab[vb | arch] = Tissue.BONE
        lab[(x / 15.0) ** 2 + ((y - lay.spine_y) / 12.0) ** 2 <= 1] = Tissue.MARROW
        lab[canal] = Tissue.MUSCLE
        # lungs: the cavity above the domes, minus the mediastinum and the spine
        apex = np.clip((lay.z_apex - z) / 55.0, 0.0, 1.0) ** 0.5
        # mediastinum: widest mid-depth, narrowing towards the sternum and the spine
        depth = np.clip(1.0 - ((y + 0.1 * lay.cav_b) / (1.1 * lay.cav_b)) ** 2, 0.0, 1.0)
        med = np.abs(x - 0.04 * lay.cav_a) < lay.med_half * (0.75 + 0.35 * apex) * (
            0.45 + 0.75 * depth)
        spine_zone = ((x / 36.0) ** 2 + ((y - lay.spine_y - 10) / 40.0) ** 2 <= 1) | (
            (np.abs(x) < 30) & (y > lay.spine_y))
        hz = ((z - heart_c[0]) / heart_r[0]) ** 2
        heart = hz + ((y - heart_c[1]) / heart_r[1]) ** 2 + ((x - heart_c[2]) / heart_r[2]) ** 2
        lung_plane = in_cav & ~med & ~spine_zone & (heart > 1.1)
        for side, dome, sx in ((0, dome_r, -1), (1, dome_l, 1)):
            cx = sx * 0.5 * lay.cav_a
            cap = (((x - cx) / (0.55 * lay.cav_a * max(apex, 0.05))) ** 2
                   + ((y - 0.15 * lay.cav_b) / (lay.cav_b * max(apex, 0.05))) ** 2) <= 1
            here = lung_plane & cap & (z > dome) & (x * sx > 0) & (apex > 0)
            lung[k][here] = side + 1
        # mediastinal content
        in_med = in_cav & ~(lung[k] > 0)
        lab[in_med & (lab == Tissue.MUSCLE)] = Tissue.ABDOMEN  # mediastinal fat / soft tissue
        lab[in_cav & (heart <= 1)] = Tissue.HEART
        lab[in_cav & (heart <= 0.55)] = Tissue.BLOOD
        desc = ((x - 0.9 * 19 - aorta_r) ** 2 + (y - lay.spine_y + 8) ** 2) <= aorta_r**2
        lab[desc & (z < z_arch)] = Tissue.BLOOD
        asc_y = -0.25 * lay.cav_b
        asc = (x ** 2 + (y - asc_y) ** 2) <= aorta_r**2
        lab[asc & (z > heart_c[0]) & (z < z_arch)] = Tissue.BLOOD
        if abs(z - z_arch) < aorta_r:  # the arch: a tube from ascending to descending
            w = np.sqrt(aorta_r**2 - (z - z_arch) ** 2)
            lab[_segment_distance(x, y, (0.0, asc_y), (0.9 * 19 + aorta_r,
                                                        lay.spine_y - 8)) <= w] = Tissue.BLOOD
        if z > lay.z_carina:
            r = 9.5 * (1 - 0.3 * neck)
            t = x ** 2 + (y + 0.05 * lay.cav_b) ** 2
            lab[t <= (r + 2.0) ** 2] = Tissue.AIRWAY_WALL
            lab[t <= r**2] = Tissue.AIRWAY
        elif z > lay.hilum[0][0] - 10:
            f = (lay.z_carina - z) / max(lay.z_carina - lay.hilum[0][0] + 10, 1.0)
            for sx in (-1, 1):
                cxb = sx * f * 0.42 * lay.cav_a
                t = (x - cxb) ** 2 + (y + 0.05 * lay.cav_b * (1 - f)) ** 2
                lab[t <= 8.5**2] = Tissue.AIRWAY_WALL
                lab[t <= 6.5**2] = Tissue.AIRWAY
        # abdomen below the domes
        below_r = in_cav & (z <= dome_r) & (x < 0.25 * lay.cav_a)
        below_l = in_cav & (z <= dome_l) & (x >= 0.25 * lay.cav_a)
        lab[below_r | below_l] = Tissue.ABDOMEN
        lab[below_r & (z > dome_r - 140)] = Tissue.LIVER
        stomach = below_l & (y < 0.2 * lay.cav_b) & (z > dome_l - 90)
        lab[stomach] = Tissue.STOMACH
        bubble = ((x - 0.55 * lay.cav_a) / 20.0) ** 2 + ((y + 0.25 * lay.cav_b) / 16.0) ** 2
        lab[stomach & (z > dome_l - 40) & (z < dome_l - 15) & (bubble <= 1)] = Tissue.GAS
        lab[below_l & (y >= 0.2 * lay.cav_b) & (x > 0.5 * lay.cav_a)] = Tissue.SPLEEN
        lab[lung[k] > 0] = Tissue.LUNG
        lung[k][lab != Tissue.LUNG] = 0
        labels[k] = lab
    hu = hu_of[labels]
    return Chest(labels=labels, hu=hu, lung=lung, layout=lay,
                 blood_hu=float(hu_of[Tissue.BLOOD]))


def _tissue_hu(p: Resolved, rng: np.random.Generator) -> np.ndarray:
    """Lookup Tissue code -> HU for the case (contrast enhancement when p.contrast)."""
    blood = rng.uniform(160, 330) if p.contrast else rng.uniform(32, 48)
    table = {
        Tissue.AIR: -1000, Tissue.FAT: rng.uniform(-115, -85), Tissue.MUSCLE: rng.uniform(40, 60),
        Tissue.BONE: rng.uniform(550, 900), Tissue.MARROW: rng.uniform(150, 280),
        Tissue.CARTILAGE: rng.uniform(90, 160), Tissue.HEART: (rng.uniform(90, 140)
                                                              if p.contrast else 45),
        Tissue.BLOOD: blood, Tissue.LIVER: rng.uniform(90, 130) if p.contrast else 58,
        Tissue.SPLEEN: rng.uniform(100, 140) if p.contrast else 48,
        Tissue.STOMACH: rng.uniform(10, 30), Tissue.GAS: -990,
        Tissue.ABDOMEN: rng.uniform(-60, -10),
        Tissue.TABLE: rng.uniform(150, 350), Tissue.AIRWAY: -985,
        Tissue.AIRWAY_WALL: rng.uniform(20, 60), Tissue.LUNG: 0,
    }
    lut = np.zeros(256, np.float32)
    for code, value in table.items():
        lut[int(code)] = value
    return lut
