"""Preprocessing defenses as steps: parameter checks, the ART preprocessor behind each step,
and the NumPy pipeline through ART's classes (the reference the framework forms must equal).

A defense (``feature_squeezing``, ``spatial_smoothing``, ``jpeg``, ``gaussian_noise``) is a
short pipeline of :class:`Step` s, each one ART preprocessor:

* ``bit_depth`` - ``art.defences.preprocessor.FeatureSqueezing``
* ``median`` - ``art.defences.preprocessor.SpatialSmoothing`` (median filter)
* ``jpeg`` - ``art.defences.preprocessor.JpegCompression``
* ``noise`` - ``art.defences.preprocessor.GaussianAugmentation(augmentation=False)``
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from advharness.core.errors import HarnessError, one_line
from advharness.models.base import WrappedModel

#: Each defense's parameters (all required).
DEFENSE_KEYS: dict[str, tuple[str, ...]] = {
    "feature_squeezing": ("bit_depth", "median_window"),
    "spatial_smoothing": ("window",),
    "jpeg": ("quality",),
    "gaussian_noise": ("sigma",),
}
#: Steps that draw random numbers at every forward pass.
RANDOM_STEPS = frozenset({"noise"})
#: Steps that need an image (a channel axis and two spatial axes).
IMAGE_STEPS = frozenset({"median", "jpeg"})


@dataclass(frozen=True)
class Step:
    """One preprocessing step: ``kind`` (bit_depth, median, jpeg, noise) and its value
    (bits, window, quality, sigma)."""

    kind: str
    value: float


def _int(where: str, key: str, value: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise HarnessError(f"{where}: {key} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise HarnessError(f"{where}: {key} must be {bound}, got {value}")
    return int(value)


def parse_defense(defense: str, params: Mapping[str, Any], where: str) -> list[Step]:
    """The steps of ``defense`` with ``params``, or a one-line error naming ``where``."""
    if defense not in DEFENSE_KEYS:
        raise HarnessError(
            f"{where}: unknown preprocessing defense {defense!r}; known: {', '.join(DEFENSE_KEYS)}"
        )
    where = f"{where}: {defense}"
    if not isinstance(params, Mapping):
        raise HarnessError(f"{where}: parameters must be a mapping, got {type(params).__name__}")
    keys = DEFENSE_KEYS[defense]
    unknown = sorted(set(map(str, params)) - set(keys))
    if unknown:
        raise HarnessError(f"{where}: unknown parameter {unknown[0]!r}; parameters: {', '.join(keys)}")
    missing = [k for k in keys if k not in params]
    if missing:
        raise HarnessError(
            f"{where}: missing parameter {missing[0]!r} (all of {', '.join(keys)} are required)"
        )
    if defense == "feature_squeezing":
        bits, window = params["bit_depth"], params["median_window"]
        if bits is None and window is None:
            raise HarnessError(f"{where}: set bit_depth, median_window or both (both are null)")
        steps = []
        if bits is not None:
            steps.append(Step("bit_depth", _int(where, "bit_depth", bits, 1, 64)))
        if window is not None:
            steps.append(Step("median", _int(where, "median_window", window, 1)))
        return steps
    if defense == "spatial_smoothing":
        return [Step("median", _int(where, "window", params["window"], 1))]
    if defense == "jpeg":
        return [Step("jpeg", _int(where, "quality", params["quality"], 1, 100))]
    sigma = params["sigma"]
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.number)):
        raise HarnessError(f"{where}: sigma must be a number, got {sigma!r}")
    if not (math.isfinite(float(sigma)) and float(sigma) > 0):
        raise HarnessError(f"{where}: sigma must be finite and > 0, got {sigma}")
    return [Step("noise", float(sigma))]


def check_model_fits(steps: Sequence[Step], model: WrappedModel, where: str) -> None:
    """Refuse steps the model's layout or bounds cannot take (one line)."""
    kinds = {s.kind for s in steps}
    if kinds & IMAGE_STEPS and model.layout not in ("NCHW", "NHWC"):
        step = sorted(kinds & IMAGE_STEPS)[0]
        raise HarnessError(
            f"{where}: the {step} step needs image inputs (layout NCHW or NHWC); "
            f"model {model.name!r} has layout {model.layout}"
        )
    if "jpeg" in kinds and model.bounds not in ((0.0, 1.0), (0.0, 255.0)):
        raise HarnessError(
            f"{where}: JPEG compression needs bounds (0, 1) or (0, 255) (ART's JpegCompression); "
            f"model {model.name!r} has bounds {model.bounds}"
        )


def art_arguments(step: Step, model: WrappedModel) -> tuple[str, dict[str, Any]]:
    """The ART class (dotted path) and every argument the step passes to it."""
    bounds = (float(model.bounds[0]), float(model.bounds[1]))
    channels_first = model.layout == "NCHW"
    common = {"apply_fit": False, "apply_predict": True}
    module = "art.defences.preprocessor"
    if step.kind == "bit_depth":
        return f"{module}.FeatureSqueezing", {"clip_values": bounds, "bit_depth": int(step.value), **common}
    if step.kind == "median":
        args = {"window_size": int(step.value), "channels_first": channels_first, "clip_values": bounds}
        return f"{module}.SpatialSmoothing", {**args, **common}
    if step.kind == "jpeg":
        args = {"clip_values": bounds, "quality": int(step.value), "channels_first": channels_first}
        return f"{module}.JpegCompression", {**args, **common, "verbose": False}
    args = {"sigma": float(step.value), "augmentation": False, "ratio": 1.0, "clip_values": bounds}
    return f"{module}.GaussianAugmentation", {**args, **common}


def art_preprocessor(step: Step, model: WrappedModel, where: str) -> Callable[[np.ndarray], np.ndarray]:
    """The step as ART's preprocessor: a NumPy function of a batch in the model's layout."""
    import importlib

    path, args = art_arguments(step, model)
    module, _, cls = path.rpartition(".")
    try:
        pre = getattr(importlib.import_module(module), cls)(**args)
    except ValueError as e:
        raise HarnessError(f"{where}: ART's {cls} refused {args}: {one_line(e)}") from None

    def apply(x: np.ndarray) -> np.ndarray:
        return np.asarray(pre(x)[0])

    return apply


def art_pipeline(
    steps: Sequence[Step], model: WrappedModel, where: str
) -> Callable[[np.ndarray], np.ndarray]:
    """The steps one after the other through ART's classes; float32 out (what the network
    receives: ART's FeatureSqueezing computes in float64)."""
    fns = [art_preprocessor(s, model, where) for s in steps]

    def apply(x: np.ndarray) -> np.ndarray:
        for fn in fns:
            x = fn(x)
        return np.asarray(x, np.float32)

    return apply


def clipped(
    fn: Callable[[np.ndarray], np.ndarray], lo: float, hi: float
) -> Callable[[np.ndarray], np.ndarray]:
    """``fn`` on its input clipped to the bounds: a deployed image never leaves them, but a
    library's finite-difference queries may (CleverHans' SPSA), and ART's JpegCompression
    refuses negative values and wraps values above the top through ``uint8``."""
    return lambda x: fn(np.clip(x, lo, hi))


def wrapping_of(base: WrappedModel) -> dict[str, Any]:
    """The wrapping facts a defended variant shares with ``base``."""
    return {
        "input_shape": base.input_shape,
        "nb_classes": base.nb_classes,
        "bounds": base.bounds,
        "layout": base.layout,
        "outputs": base.outputs,
    }


class DefendedParameters:
    """Mixin (before the framework's model class): a defended variant's parameters are its
    base model's plus a record of the defense, so a variant never shares the base's hash."""

    base: WrappedModel
    record: str
    defense_info: dict[str, Any] | None
    randomized: bool

    def adopt(self, base: WrappedModel, info: dict[str, Any]) -> None:
        """Take ``base`` and the defense's ``info`` (the record is fixed here: ``defense_info``
        may grow afterwards)."""
        self.base = base
        self.defense_info = info
        self.randomized = bool(info["randomized"])
        self.record = json.dumps(
            {k: info[k] for k in ("defense", "params", "gradient", "eot")}, sort_keys=True
        )

    def parameter_arrays(self) -> Iterator[tuple[str, np.ndarray]]:
        yield from self.base.parameter_arrays()
        yield "preprocessing", np.frombuffer(self.record.encode(), np.uint8)
