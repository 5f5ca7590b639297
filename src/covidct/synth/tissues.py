"""Tissue codes of the phantom's label volume and their HU (jittered per case)."""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class T(IntEnum):
    """Tissue codes (uint8). Lung codes are the last two so `code >= LUNG_R` means lung."""

    AIR = 0
    TABLE = 1
    FOAM = 2
    SKIN = 3
    FAT = 4
    MUSCLE = 5
    CORTEX = 6
    MARROW = 7
    CARTILAGE = 8
    DISC = 9
    CORD = 10
    MED_FAT = 11
    HEART = 12
    BLOOD = 13
    AIRWAY_WALL = 14
    AIRWAY_AIR = 15
    ESOPHAGUS = 16
    LIVER = 17
    SPLEEN = 18
    STOMACH = 19
    GAS = 20
    ABDOMEN = 21
    EFFUSION = 22
    THYROID = 23
    LUNG_R = 30
    LUNG_L = 31


# (mean HU, per-case jitter SD)
_HU = {
    T.AIR: (-1000, 0), T.TABLE: (250, 60), T.FOAM: (-930, 20), T.SKIN: (25, 8),
    T.FAT: (-105, 10), T.MUSCLE: (48, 6), T.CORTEX: (750, 100), T.MARROW: (230, 50),
    T.CARTILAGE: (140, 30), T.DISC: (85, 10), T.CORD: (30, 5), T.MED_FAT: (-95, 10),
    T.HEART: (42, 5), T.BLOOD: (42, 5), T.AIRWAY_WALL: (20, 10), T.AIRWAY_AIR: (-995, 5),
    T.ESOPHAGUS: (38, 6), T.LIVER: (60, 8), T.SPLEEN: (47, 5), T.STOMACH: (18, 10),
    T.GAS: (-995, 5), T.ABDOMEN: (-40, 25), T.EFFUSION: (12, 6), T.THYROID: (95, 15),
    T.LUNG_R: (-860, 0), T.LUNG_L: (-860, 0),
}


def hu_table(rng: np.random.Generator) -> np.ndarray:
    """A 256-entry float32 lookup table code -> HU for one case."""
    lut = np.full(256, -1000.0, dtype=np.float32)
    for code, (mean, sd) in _HU.items():
        lut[int(code)] = mean + (rng.normal(0.0, sd) if sd else 0.0)
    return lut
