"""Organ gas joined to the lung air (covidct.gut_gas) on a phantom with known answers."""

from __future__ import annotations

import numpy as np

from covidct.anatomy import chest_anatomy

SPACING = (2.5, 2.0, 2.0)  # mm: no in-plane pooling


def _phantom(seed: int = 0):
    """An elliptic body (40 HU) with two lungs (-850 HU, noise, 3 % vessels); low in the
    right lung (its top in the lowest quarter of the lungs' extent, as a stomach's) a bulla
    (pure gas, radius 10 mm); under the left lung a gas-filled stomach (an ellipsoid of
    pure gas in soft tissue) joined to the lung base by a channel of -700 HU (the partial
    volume of a thin diaphragm)."""
    rng = np.random.default_rng(seed)
    z, n = 90, 128
    hu = np.full((z, n, n), -1000.0, dtype=np.float32)
    zz, yy, xx = np.mgrid[:z, :n, :n]
    body = ((yy - 60) / 50.0) ** 2 + ((xx - 64) / 60.0) ** 2 <= 1.0
    hu[body] = 40.0
    lungs = {}
    for name, cx in (("right", 38), ("left", 90)):
        lung = (((yy - 58) / 30.0) ** 2 + ((xx - cx) / 22.0) ** 2 + ((zz - 50) / 34.0) ** 2
                <= 1.0)
        hu[lung] = -850.0 + rng.normal(0.0, 30.0, size=int(lung.sum()))
        lungs[name] = lung
    hu[(lungs["right"] | lungs["left"]) & (rng.random(hu.shape) < 0.03)] = 40.0
    bulla = ((zz - 21) * 2.5) ** 2 + ((yy - 58) * 2.0) ** 2 + ((xx - 38) * 2.0) ** 2 <= 10.0**2
    hu[bulla] = -1000.0
    stomach = (((yy - 62) / 12.0) ** 2 + ((xx - 88) / 12.0) ** 2 + ((zz - 8) / 6.0) ** 2
               <= 1.0)
    hu[stomach] = -1000.0
    channel = (zz >= 12) & (zz <= 22) & (np.abs(yy - 62) <= 1) & (np.abs(xx - 88) <= 0)
    hu[channel & ~lungs["left"]] = -700.0
    return hu, lungs, bulla, stomach


def test_stomach_gas_leaves_the_lung_air_and_a_bulla_stays():
    hu, lungs, bulla, stomach = _phantom()
    anatomy = chest_anatomy(hu, SPACING)
    assert anatomy.grid.factor == 1
    assert anatomy.gut[stomach].mean() > 0.95
    assert not anatomy.lung_air[stomach].any()
    assert not anatomy.gut[bulla].any()
    assert anatomy.lung_air[bulla].mean() > 0.95
    aerated = (lungs["right"] | lungs["left"]) & (hu < -400)
    assert anatomy.lung_air[aerated].mean() > 0.98  # the lung base loses at most its rim


def test_without_the_channel_nothing_changes():
    hu, lungs, bulla, stomach = _phantom(1)
    hu[stomach] = 40.0  # no stomach gas: no organ gas, the lungs as before
    anatomy = chest_anatomy(hu, SPACING)
    assert not anatomy.gut.any()
    assert anatomy.lung_air[bulla].mean() > 0.95
