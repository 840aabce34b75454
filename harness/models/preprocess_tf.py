"""TensorFlow/Keras side of the preprocessing defenses: a Keras model that preprocesses its
input and runs the wrapped network, with exact or BPDA gradients and EOT averaging.

Forward forms (each equal to ART's preprocessor, see ``tests/test_preprocessing_defenses.py``):
bit depth and the median filter are TF-native re-implementations; JPEG calls ART's
``JpegCompression`` on NumPy through ``tf.numpy_function``; the Gaussian noise is drawn from
NumPy's global generator (see :func:`gaussian_noise`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, cast

import keras
import numpy as np
import tensorflow as tf

from advharness.core.errors import HarnessError
from advharness.models.base import WrappedModel
from advharness.models.preprocess_steps import (
    DefendedParameters,
    Step,
    art_preprocessor,
    clipped,
    wrapping_of,
)
from advharness.models.tf_model import TFModel

TensorFn = Callable[[tf.Tensor], tf.Tensor]


def substitute(fn: TensorFn, straight: bool) -> TensorFn:
    """``fn`` in the forward pass; backward the identity (``straight``: BPDA) or zero (the
    exact derivative of a piecewise-constant ``fn``: TensorFlow itself gives None there,
    which the libraries cannot take)."""

    @tf.custom_gradient
    def apply(x: tf.Tensor) -> Any:
        y = tf.stop_gradient(fn(x))

        def grad(dy: tf.Tensor) -> tf.Tensor:
            return dy if straight else tf.zeros_like(dy)

        return y, grad

    return cast(TensorFn, apply)


def bit_depth(x: tf.Tensor, bits: int, lo: float, hi: float) -> tf.Tensor:
    """ART's ``FeatureSqueezing`` (``tf.round`` rounds half to even like ``np.rint``), in
    float64 like ART."""
    m = float(2**bits - 1)
    z = tf.cast((x - lo) / (hi - lo), tf.float64)
    return tf.cast(tf.round(z * m) / m * (hi - lo) + lo, x.dtype)


def reflect_index(n: int, before: int, after: int) -> np.ndarray:
    """Indices of SciPy's ``mode="reflect"`` padding of an axis of length ``n``."""
    i = np.arange(-before, n + after) % (2 * n)
    return np.where(i < n, i, 2 * n - 1 - i)


def median(x: tf.Tensor, window: int, channels_first: bool) -> tf.Tensor:
    """ART's ``SpatialSmoothing`` (``scipy.ndimage.median_filter``, mode ``reflect``, the
    window's centre at the lower right for even sizes, element ``size // 2`` of the sorted
    window); differentiable through ``tf.math.top_k`` (the derivative selects the median)."""
    h_axis = 2 if channels_first else 1
    h, w = int(x.shape[h_axis]), int(x.shape[h_axis + 1])
    top = window // 2
    padded = tf.gather(x, reflect_index(h, top, window - 1 - top), axis=h_axis)
    padded = tf.gather(padded, reflect_index(w, top, window - 1 - top), axis=h_axis + 1)
    if channels_first:
        shifts = [padded[:, :, i : i + h, j : j + w] for i in range(window) for j in range(window)]
    else:
        shifts = [padded[:, i : i + h, j : j + w, :] for i in range(window) for j in range(window)]
    n = window * window
    # the (n // 2)-th smallest is the (n - n // 2)-th largest
    return tf.math.top_k(tf.stack(shifts, axis=-1), k=n - n // 2, sorted=True).values[..., -1]


def gaussian_noise(x: tf.Tensor, sigma: float, lo: float, hi: float) -> tf.Tensor:
    """ART's ``GaussianAugmentation(augmentation=False)``: ``x + N(0, sigma^2)``, clipped.

    The standard normals come from NumPy's global generator (as ART's do; the harness seeds
    it) through ``tf.numpy_function``, not from ``tf.random``: in a compiled function the op
    seed of ``tf.random.normal`` is fixed when it is traced, so a later ``tf.random.set_seed``
    with another seed replays the first seed's stream, and results would depend on which
    cell traced the graph first."""

    def draw(shape: np.ndarray) -> np.ndarray:
        return np.random.standard_normal(tuple(int(s) for s in shape)).astype(np.float32)

    z = tf.numpy_function(draw, [tf.shape(x)], tf.float32, stateful=True)
    z = tf.cast(tf.ensure_shape(z, x.shape), x.dtype)
    return tf.clip_by_value(x + sigma * z, lo, hi)


def make_steps(steps: Sequence[Step], model: WrappedModel, where: str) -> list[TensorFn]:
    """Each step as a function of a TF batch in the model's layout (exact gradients)."""
    lo, hi = model.bounds
    channels_first = model.layout == "NCHW"
    fns: list[TensorFn] = []
    for step in steps:
        v = step.value
        if step.kind == "bit_depth":
            fns.append(substitute(functools.partial(bit_depth, bits=int(v), lo=lo, hi=hi), straight=False))
        elif step.kind == "median":
            fns.append(functools.partial(median, window=int(v), channels_first=channels_first))
        elif step.kind == "noise":
            fns.append(functools.partial(gaussian_noise, sigma=float(v), lo=lo, hi=hi))
        else:  # jpeg: ART on NumPy; its exact derivative is zero (quantised output)
            art = clipped(art_preprocessor(step, model, where), lo, hi)

            def jpeg(x: tf.Tensor, art: Callable[[np.ndarray], np.ndarray] = art) -> tf.Tensor:
                y = tf.numpy_function(lambda a: art(a).astype(a.dtype), [x], x.dtype, stateful=False)
                return tf.ensure_shape(y, x.shape)

            fns.append(substitute(jpeg, straight=False))
    return fns


class PreprocessedKerasModel(keras.Model):
    """``net(preprocess(x))``; with ``eot = k > 1`` the mean of the network's outputs over
    ``k`` independent preprocessings of ``x`` (one batched pass of ``k * N`` rows)."""

    def __init__(self, net: Any, steps: list[TensorFn], gradient: str, eot: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.net = net
        self.steps = steps
        self.bpda = gradient == "bpda"
        self.eot = eot

    def preprocess(self, x: tf.Tensor) -> tf.Tensor:
        """The deployed preprocessing; backward: exact (the steps' own derivatives) or the
        identity (BPDA)."""

        def run(t: tf.Tensor) -> tf.Tensor:
            for fn in self.steps:
                t = fn(t)
            return t

        return substitute(run, straight=True)(x) if self.bpda else run(x)

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        x = tf.convert_to_tensor(x)
        if self.eot == 1:
            return self.net(self.preprocess(x), training=False)
        n = tf.shape(x)[0]
        out = self.net(self.preprocess(tf.concat([x] * self.eot, axis=0)), training=False)
        return tf.reduce_mean(tf.reshape(out, tf.concat([[self.eot, n], tf.shape(out)[1:]], 0)), axis=0)


class PreprocessedTFModel(DefendedParameters, TFModel):
    """A :class:`TFModel` of a :class:`PreprocessedKerasModel` (see :class:`DefendedParameters`)."""

    def __init__(self, net: PreprocessedKerasModel, base: TFModel, info: dict[str, Any], name: str) -> None:
        super().__init__(net, **wrapping_of(base), name=name)
        self.adopt(base, info)


def build(
    model: WrappedModel, steps: Sequence[Step], gradient: str, eot: int, name: str, info: dict[str, Any]
) -> WrappedModel:
    """The Keras/TF model ``model`` behind the preprocessing ``steps``."""
    if not isinstance(model, TFModel):
        raise HarnessError(
            f"model {name!r}: a preprocessing defense wraps a Keras model or tf.Module wrapped by wrap_model "
            f"(TFModel); got a {type(model).__name__}"
        )
    fns = make_steps(steps, model, f"model {name!r}")
    # created frozen: release() restores what TFModel found, and Keras' ``trainable`` setter
    # reaches the base network, which must stay frozen while the base model is wrapped
    net = PreprocessedKerasModel(model.model, fns, gradient, eot, trainable=False)
    return PreprocessedTFModel(net, model, info, name)
