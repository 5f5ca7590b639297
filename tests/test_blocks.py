"""covidct.blocks: bounding boxes and block reduction on arrays with known answers."""

from __future__ import annotations

import numpy as np

from covidct.blocks import block_reduce, block_upsample, bounding_box


def test_bounding_box_with_margins_is_clipped_to_the_array():
    mask = np.zeros((10, 12, 14), dtype=bool)
    mask[3:5, 0:2, 10:12] = True
    assert bounding_box(mask) == (slice(3, 5), slice(0, 2), slice(10, 12))
    assert bounding_box(mask, 3) == (slice(0, 8), slice(0, 5), slice(7, 14))
    assert bounding_box(mask, (0, 1, 2)) == (slice(3, 5), slice(0, 3), slice(8, 14))


def test_block_mean_and_its_inverse():
    hu = np.arange(2 * 4 * 6, dtype=np.int16).reshape(2, 4, 6)
    mean = block_reduce(hu, (1, 2, 2), "mean")
    assert mean.dtype == np.float32 and mean.shape == (2, 2, 3)
    assert mean[0, 0, 0] == (0 + 1 + 6 + 7) / 4  # exact for integer HU
    np.testing.assert_array_equal(mean, hu.reshape(2, 2, 2, 3, 2).mean(axis=(2, 4)))
    back = block_upsample(mean, (1, 2, 2), hu.shape)
    assert back.shape == hu.shape and back[1, 3, 5] == mean[1, 1, 2]


def test_odd_sizes_are_edge_padded_and_cropped_back():
    mask = np.zeros((1, 3, 3), dtype=bool)
    mask[0, 2, 2] = True  # the last block holds this voxel and its edge copies
    assert block_reduce(mask, (1, 2, 2), "majority")[0, 1, 1]
    assert not block_reduce(mask, (1, 2, 2), "any")[0, 0, 0]
    assert block_upsample(block_reduce(mask, (1, 2, 2), "any"), (1, 2, 2), mask.shape).shape \
        == mask.shape
