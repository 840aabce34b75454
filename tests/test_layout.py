"""Layouts: the one module that converts NCHW, NHWC and flat batches and shapes."""

from __future__ import annotations

import numpy as np
import pytest

from advharness.models.layout import channel_axis, from_nchw, image_size, shape_from, shape_in


def test_batches_and_shapes_convert_both_ways() -> None:
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)  # N, C=3, H=4, W=5
    nhwc = from_nchw(x, "NHWC")
    assert nhwc.shape == (2, 4, 5, 3) and nhwc.dtype == np.float32 and nhwc.flags.c_contiguous
    assert nhwc[1, 2, 3, 0] == x[1, 0, 2, 3]
    np.testing.assert_array_equal(from_nchw(x, "flat"), x.reshape(2, -1))
    np.testing.assert_array_equal(from_nchw(x, "NCHW"), x)
    assert shape_in("NHWC", (3, 4, 5)) == nhwc.shape[1:] and shape_in("NCHW", (3, 4, 5)) == (3, 4, 5)
    assert shape_from("NHWC", (4, 5, 3)) == (3, 4, 5) and shape_from("flat", (60,)) == (60,)
    assert all(shape_from(lay, shape_in(lay, (3, 4, 5))) == (3, 4, 5) for lay in ("NCHW", "NHWC"))
    assert image_size("NCHW", (3, 4, 5)) == image_size("NHWC", (4, 5, 3)) == (4, 5)
    assert [channel_axis(lay) for lay in ("NCHW", "NHWC", "flat")] == [1, 3, None]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_square_attack_reads_the_height_in_either_layout(layout: str) -> None:
    from advharness.adapters.art.blackbox import square_unsupported

    reason = square_unsupported(layout, (1, *shape_in(layout, (1, 9, 30))), "l2")  # too low for L2
    assert reason is not None and "these are 9:" in reason
    assert square_unsupported(layout, (1, *shape_in(layout, (1, 30, 9))), "l2") is None
