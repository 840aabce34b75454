"""Input layouts: the one place that converts between NCHW, NHWC and flat batches and shapes.

Callers hand the harness NCHW batches; a model takes them in its own ``layout``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from advharness.core.errors import HarnessError
from advharness.models.base import WrappedModel


def from_nchw(x: np.ndarray, layout: str) -> np.ndarray:
    """An NCHW batch in ``layout`` (NHWC transposed, flat reshaped), contiguous float32."""
    layouts = {
        "NCHW": lambda a: a,
        "NHWC": lambda a: a.transpose(0, 2, 3, 1),
        "flat": lambda a: a.reshape(len(a), -1),
    }
    return np.ascontiguousarray(layouts[layout](x), dtype=np.float32)


def to_layout(x: np.ndarray, model: WrappedModel) -> np.ndarray:
    """An NCHW batch in ``model``'s layout (:func:`from_nchw`)."""
    return from_nchw(x, model.layout)


def to_nchw(x: np.ndarray, model: WrappedModel, image_shape: tuple[int, ...]) -> np.ndarray:
    """``x`` in ``model``'s layout back to NCHW (``image_shape``: the (C, H, W) to restore)."""
    layouts: dict[str, Any] = {
        "NCHW": lambda a: a,
        "NHWC": lambda a: a.transpose(0, 3, 1, 2),
        "flat": lambda a: a.reshape(len(a), *image_shape),
    }
    return np.ascontiguousarray(layouts[model.layout](x), dtype=np.float32)


def shape_in(layout: str, chw: tuple[int, ...]) -> tuple[int, ...]:
    """A per-sample NCHW shape ``(C, H, W)`` in ``layout``'s order: ``(H, W, C)`` for NHWC;
    any other shape as given."""
    return (chw[1], chw[2], chw[0]) if layout == "NHWC" and len(chw) == 3 else tuple(chw)


def shape_from(layout: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A per-sample shape in ``layout``'s order as NCHW: ``(C, H, W)`` from NHWC's
    ``(H, W, C)``; any other shape as given (the inverse of :func:`shape_in`)."""
    return (shape[2], shape[0], shape[1]) if layout == "NHWC" and len(shape) == 3 else tuple(shape)


def nchw_shape(model: WrappedModel) -> tuple[int, ...]:
    """The per-sample shape of the NCHW (or flat) batch that ``model`` takes."""
    return shape_from(model.layout, model.input_shape)


def channel_axis(layout: str) -> int | None:
    """The channel axis of a batch in ``layout``: 1 (NCHW), 3 (NHWC), None (flat)."""
    return {"NCHW": 1, "NHWC": 3}.get(layout)


def image_size(layout: str, shape: tuple[int, ...]) -> tuple[int, int]:
    """``(H, W)`` of an image whose per-sample shape in ``layout`` is ``shape``."""
    _, h, w = shape_from(layout, shape)
    return h, w


def check_layout(x: np.ndarray, model: WrappedModel) -> None:
    """Refuse a batch that does not fit ``model``'s declared input shape and layout, in the
    shapes the user passed (never a transposed one), naming the likely fix."""
    got = tuple(x.shape[1:])
    s = model.input_shape
    if model.layout == "flat":
        if int(np.prod(got)) != s[0]:
            raise HarnessError(
                f"model {model.name!r} takes flat inputs of {s[0]} features; got a "
                f"batch of shape {tuple(x.shape)} ({int(np.prod(got))} features)"
            )
        return
    want = nchw_shape(model)
    if got == want:
        return
    other = "NCHW" if model.layout == "NHWC" else "NHWC"
    if len(s) == 3 and len(got) == 3 and got == shape_from(other, s):
        # the batch fits input_shape read in the other layout: either may be the mistake
        fits = list(shape_in(model.layout, got))
        raise HarnessError(
            f"model {model.name!r}: the batch of shape {tuple(x.shape)} fits input_shape {s} "
            f"as {other}, but the model's layout is {model.layout}. If the model takes {other} "
            f"inputs, set layout: {other}; if it takes {model.layout}, set input_shape: {fits}"
        )
    raise HarnessError(
        f"model {model.name!r} expects inputs of shape (N, {', '.join(map(str, want))}), got "
        f"{tuple(x.shape)}"
        + (f" (an NCHW batch: its input_shape {s} is NHWC)" if model.layout == "NHWC" else "")
    )


def convert(x: np.ndarray, source: WrappedModel, target: WrappedModel) -> np.ndarray:
    """A batch in ``source``'s layout, in ``target``'s layout (same features, same order)."""
    shape = nchw_shape(target if source.layout == "flat" else source)
    if int(np.prod(nchw_shape(source))) != int(np.prod(nchw_shape(target))):
        raise HarnessError(
            f"transfer from {source.name!r} to {target.name!r}: input shapes "
            f"{source.input_shape} and {target.input_shape} differ"
        )
    return to_layout(to_nchw(x, source, shape), target)
