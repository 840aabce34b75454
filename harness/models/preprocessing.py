"""Inference-time preprocessing defenses as model wrappers, and the feature-squeezing
detector's score.

:func:`preprocessed_model` puts a preprocessing (feature squeezing, spatial smoothing, JPEG,
Gaussian noise) in front of a wrapped model's network and wraps the result as a new
:class:`WrappedModel` of the same framework, shape, layout, bounds and classes. It is a plain
framework model (a ``torch.nn.Module`` / a Keras model), so every library and every harness
mechanism (query counting, oracles, path recording, the referee) works on it unchanged. The
forward pass is always the defense as deployed; ``gradient`` chooses the backward pass
(``exact`` or ``bpda``) and ``eot`` averages over random draws (:data:`GRADIENT_SEMANTICS`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from advharness.core.errors import HarnessError
from advharness.models.base import WrappedModel
from advharness.models.preprocess_steps import (
    RANDOM_STEPS,
    Step,
    art_arguments,
    art_pipeline,
    check_model_fits,
    parse_defense,
)

#: What each gradient mode's backward pass computes (the forward pass is the same).
GRADIENT_SEMANTICS: dict[str, str] = {
    "exact": (
        "the derivative the framework computes for the deployed pipeline: zero through "
        "bit-depth reduction and JPEG (piecewise constant: their derivative is zero almost "
        "everywhere), the selection derivative through the median filter (1 at each window's "
        "median element, 0 elsewhere), 1 through additive Gaussian noise where the noisy input "
        "lies inside the bounds and 0 where it was clipped (one draw per forward pass)"
    ),
    "bpda": (
        "BPDA (Athalye et al. 2018): the deployed preprocessing in the forward pass, the "
        "identity in the backward pass for the whole preprocessing (straight-through): the "
        "gradient is the network's gradient at the preprocessed input"
    ),
}
EOT_SEMANTICS = (
    "the forward pass returns the mean of the network's outputs (logits) over k independent "
    "draws of the preprocessing (one batched pass of k*N rows), so every library's gradient "
    "is the average over the k draws of the per-draw gradient (of the chosen gradient mode); "
    "one counted forward row is k network evaluations"
)

_FORWARD: dict[str, str] = {
    "bit_depth": (
        "{fw}-native re-implementation of FeatureSqueezing, in float64 like ART; equal to "
        "ART's output (tests/test_preprocessing_defenses.py)"
    ),
    "median": (
        "{fw}-native median filter equal to SpatialSmoothing's output (tests/"
        "test_preprocessing_defenses.py), differentiable; not ART's SpatialSmoothingPyTorch / "
        "SpatialSmoothingTensorFlowV2: they pad in mirror mode (not SciPy's 'reflect' that "
        "SpatialSmoothing uses), so their borders differ, the PyTorch one also takes the lower "
        "median for even windows and needs kornia (not installed)"
    ),
    "jpeg": (
        "ART's JpegCompression itself, called on NumPy inside {bridge}, on the input clipped "
        "to the bounds (a no-op for valid images; finite-difference queries may leave the "
        "bounds, which ART refuses below 0 and wraps through uint8 above the top)"
    ),
    "noise": (
        "{fw}-native: x + sigma * N(0, 1), clipped to the bounds: GaussianAugmentation"
        "(augmentation=False)'s computation; {noise}"
    ),
}
_NOISE = {
    "torch": (
        "the normals drawn from torch's generator (seeded by the harness; on the model's device) "
        "instead of NumPy's global one"
    ),
    "tensorflow": (
        "the normals drawn from NumPy's global generator (like ART; seeded by the harness) "
        "through tf.numpy_function: tf.random's op seeds are fixed when a compiled function is "
        "traced, so later reseeding would not reach them"
    ),
}
_BRIDGE = {"torch": "a torch.autograd.Function", "tensorflow": "tf.numpy_function"}


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def defense_steps(model: WrappedModel, defense: str, params: Mapping[str, Any], where: str) -> list[Step]:
    """The checked steps of ``defense`` for ``model`` (one-line errors naming ``where``)."""
    steps = parse_defense(defense, params, where)
    check_model_fits(steps, model, f"{where}: {defense}")
    return steps


def preprocessed_model(
    model: WrappedModel,
    defense: str,
    params: Mapping[str, Any],
    *,
    gradient: Literal["exact", "bpda"] = "exact",
    eot: int = 1,
    name: str,
) -> WrappedModel:
    """``model`` behind the preprocessing ``defense`` (with ``params``), as a new wrapped
    model of the same framework, input shape, layout, bounds, classes and outputs.

    ``gradient="exact"``: the framework's derivative of the deployed pipeline (zero through
    bit depth and JPEG, the selection derivative through the median, the identity through
    the noise inside the bounds). ``gradient="bpda"``: the identity through the whole
    preprocessing (straight-through). ``eot=k``: the forward pass returns the mean of the
    network's logits over ``k`` independent draws, so every library's gradient is the average
    over ``k`` draws (only for the randomized ``gaussian_noise``).

    The result carries ``defense_info`` (the defense, params, ART classes and arguments, how
    each forward step is computed, the gradient mode and its semantics, eot k, randomized)
    and ``randomized``.
    """
    where = f"model {name!r}"
    steps = defense_steps(model, defense, params, where)
    if gradient not in GRADIENT_SEMANTICS:
        raise HarnessError(
            f"{where}: gradient must be one of {', '.join(GRADIENT_SEMANTICS)}, got {gradient!r}"
        )
    if isinstance(eot, bool) or not isinstance(eot, (int, np.integer)) or eot < 1:
        raise HarnessError(f"{where}: eot must be an integer >= 1, got {eot!r}")
    randomized = any(s.kind in RANDOM_STEPS for s in steps)
    if eot > 1 and not randomized:
        raise HarnessError(
            f"{where}: eot={eot} needs a randomized defense; {defense!r} is deterministic (use eot: 1)"
        )
    fw = model.framework
    if fw not in _BRIDGE:
        raise HarnessError(f"{where}: preprocessing defenses support torch and tensorflow models, not {fw!r}")
    art_pipeline(steps, model, where)  # ART's classes accept the arguments (one-line error if not)
    forward = []
    for s in steps:
        cls, args = art_arguments(s, model)
        text = _FORWARD[s.kind].format(
            fw={"torch": "torch", "tensorflow": "TensorFlow"}[fw], bridge=_BRIDGE[fw], noise=_NOISE[fw]
        )
        forward.append(
            {
                "step": s.kind,
                "art_class": cls,
                "art_args": {k: _jsonable(v) for k, v in args.items()},
                "forward": text,
            }
        )
    info: dict[str, Any] = {
        "defense": defense,
        "params": dict(params),
        "base_model": model.name,
        "steps": forward,
        "gradient": gradient,
        "gradient_semantics": GRADIENT_SEMANTICS[gradient],
        "eot": int(eot),
        "eot_semantics": EOT_SEMANTICS if eot > 1 else "one draw per forward pass (no averaging)",
        "randomized": randomized,
    }
    if fw == "torch":
        from advharness.models.preprocess_torch import build as build_torch

        return build_torch(model, steps, gradient, int(eot), name, info)
    from advharness.models.preprocess_tf import build as build_tf

    return build_tf(model, steps, gradient, int(eot), name, info)


def squeeze_scores(
    model: WrappedModel, x: np.ndarray, squeezers: Sequence[tuple[str, Mapping[str, Any]]]
) -> np.ndarray:
    """The feature-squeezing detector's score (Xu et al. 2018) of each sample of ``x`` (the
    model's layout): the maximum over ``squeezers`` (``(defense, params)`` pairs, deterministic
    defenses only) of the L1 distance between the softmax of ``model``'s prediction on the raw
    input and on the squeezed input. The squeezing runs through ART's classes on NumPy."""
    where = f"squeezing detector on model {model.name!r}"
    if not squeezers:
        raise HarnessError(f"{where}: no squeezers given")
    x = np.asarray(x, np.float32)
    model.check_inputs(x)
    pipelines = []
    for defense, params in squeezers:
        steps = defense_steps(model, defense, params, where)
        if any(s.kind in RANDOM_STEPS for s in steps):
            raise HarnessError(
                f"{where}: squeezer {defense!r} is randomized; squeezers must be deterministic"
            )
        pipelines.append(art_pipeline(steps, model, where))
    raw = _softmax(model.predict_logits(x))
    score = np.zeros(len(x), np.float64)
    for squeeze in pipelines:
        score = np.maximum(score, np.abs(raw - _softmax(model.predict_logits(squeeze(x)))).sum(axis=1))
    return score


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(z / z.sum(axis=1, keepdims=True))
