"""Input layouts: the caller's NCHW arrays to a model's own layout, and between models."""

from __future__ import annotations

from typing import Any

import numpy as np

from advharness.core.errors import HarnessError
from advharness.models.base import WrappedModel


def to_layout(x: np.ndarray, model: WrappedModel) -> np.ndarray:
    """An NCHW batch in ``model``'s layout (NHWC transposed, flat reshaped)."""
    layouts = {
        "NCHW": lambda a: a,
        "NHWC": lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1)),
        "flat": lambda a: a.reshape(len(a), -1),
    }
    return np.ascontiguousarray(layouts[model.layout](x), dtype=np.float32)


def nchw_input_shape(model: WrappedModel) -> tuple[int, ...]:
    """The per-sample shape of the NCHW (or flat) batch that ``model`` takes."""
    s = model.input_shape
    return (s[2], s[0], s[1]) if model.layout == "NHWC" and len(s) == 3 else s


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
    want = nchw_input_shape(model)
    if got == want:
        return
    other = "NCHW" if model.layout == "NHWC" else "NHWC"
    if len(s) == 3 and len(got) == 3 and got == (s if other == "NCHW" else (s[2], s[0], s[1])):
        # the batch fits input_shape read in the other layout: either may be the mistake
        c, h, w = got
        fits = [c, h, w] if model.layout == "NCHW" else [h, w, c]
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


def to_nchw(x: np.ndarray, model: WrappedModel, image_shape: tuple[int, ...]) -> np.ndarray:
    """``x`` in ``model``'s layout back to NCHW (``image_shape``: the (C, H, W) to restore)."""
    layouts: dict[str, Any] = {
        "NCHW": lambda a: a,
        "NHWC": lambda a: a.transpose(0, 3, 1, 2),
        "flat": lambda a: a.reshape(len(a), *image_shape),
    }
    return np.ascontiguousarray(layouts[model.layout](x), dtype=np.float32)


def nchw_shape(model: WrappedModel) -> tuple[int, ...]:
    """The NCHW image shape of an image model, or its flat shape."""
    shape = model.input_shape
    return {
        "NCHW": shape,
        "NHWC": (shape[2], shape[0], shape[1]) if len(shape) == 3 else shape,
        "flat": shape,
    }[model.layout]


def convert(x: np.ndarray, source: WrappedModel, target: WrappedModel) -> np.ndarray:
    """A batch in ``source``'s layout, in ``target``'s layout (same features, same order)."""
    shape = nchw_shape(target if source.layout == "flat" else source)
    if int(np.prod(nchw_shape(source))) != int(np.prod(nchw_shape(target))):
        raise HarnessError(
            f"transfer from {source.name!r} to {target.name!r}: input shapes "
            f"{source.input_shape} and {target.input_shape} differ"
        )
    return to_layout(to_nchw(x, source, shape), target)
