"""covidct.slice_evidence: the classifier's slice probability with the GGO evidence (noisy-OR)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from covidct.slice_evidence import fuse, slice_area_cm2


def test_area_per_slice_in_cm2() -> None:
    mask = np.zeros((3, 10, 10), bool)
    mask[1, :4, :5] = True          # 20 voxels of 0.5 x 2 mm = 20 mm2 = 0.2 cm2
    mask[2] = True                  # 100 voxels = 1 cm2
    np.testing.assert_allclose(slice_area_cm2(mask, (5.0, 0.5, 2.0)), [0.0, 0.2, 1.0])
    with pytest.raises(ValueError, match=r"\(z, y, x\)"):
        slice_area_cm2(mask[0], (5.0, 0.5, 2.0))


def test_noisy_or_of_classifier_and_ggo_evidence() -> None:
    p = np.array([0.0, 0.2, 0.9, 0.5, 0.0])
    area = np.array([0.0, 0.0, 0.0, 4.0, 4.0])
    out = fuse(p, area, 4.0)
    assert out.dtype == np.float32
    # Without GGO a slice keeps the classifier's probability.
    np.testing.assert_allclose(out[:3], p[:3], atol=1e-7)
    # A0 cm2 of GGO alone gives 1 - 1/e; with the classifier's 0.5, 1 - 0.5/e.
    assert out[4] == pytest.approx(1 - math.exp(-1), abs=1e-6)
    assert out[3] == pytest.approx(1 - 0.5 * math.exp(-1), abs=1e-6)
    # Never below the classifier, rising with the area, below 1.
    more = fuse(p, area * 3, 4.0)
    assert (out >= p - 1e-7).all() and (more >= out).all() and more.max() < 1.0
    # Scale 0: the classifier alone (Gozes et al.).
    np.testing.assert_array_equal(fuse(p, area, 0.0), p.astype(np.float32))


def test_fuse_refuses_a_negative_scale_and_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="scale_cm2"):
        fuse(np.zeros(3), np.zeros(3), -1.0)
    with pytest.raises(ValueError, match="GGO areas"):
        fuse(np.zeros(3), np.zeros(4), 1.0)
