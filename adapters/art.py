"""ART (adversarial-robustness-toolbox 1.20) adapter: canonical specs -> ART evasion attacks.

Every constructor argument that affects the result is passed explicitly (ART defaults are
never relied upon), the escape hatch ``library_options["art"]`` is merged last, and all
queries go through ``model.counted`` via the cached estimator from ``model_form``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from advharness.adapters.art_blackbox import BLACKBOX_IMPLS
from advharness.adapters.base import Adapter, AttackOutput, AttackRequest, Impl, LibraryCall
from advharness.models import WrappedModel

_NORMS: dict[str, float] = {"linf": np.inf, "l2": 2, "l1": 1}
_APGD_LOSS: dict[str, str] = {"ce": "cross_entropy", "dlr": "difference_logits_ratio"}


def _torch_estimator(model: WrappedModel, net: Any = None) -> Any:
    import torch
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=model.counted if net is None else net, loss=torch.nn.CrossEntropyLoss(),
        input_shape=model.input_shape,
        nb_classes=model.nb_classes, clip_values=model.bounds,
        channels_first=(model.layout == "NCHW"),
        device_type="cpu" if model.device == "cpu" else "gpu",
    )


def _tf_estimator(model: WrappedModel, net: Any = None) -> Any:
    import keras
    from art.estimators.classification import TensorFlowV2Classifier

    est = TensorFlowV2Classifier(
        model=model.counted if net is None else net, nb_classes=model.nb_classes,
        input_shape=model.input_shape,
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        clip_values=model.bounds, channels_first=False,
    )
    if net is None and model.access != "white-box":
        # a query-only oracle: keep ART's compiled model call, but let the oracle's ledger
        # run in Python after it rather than behind a tf.py_function inside ART's graph
        est._forward_pass = model.counted.compiled_forward(est._forward_pass)
    return est


_CONVERTERS: dict[str, Callable[..., Any]] = {
    "torch": _torch_estimator, "tensorflow": _tf_estimator,
}


@contextmanager
def _quiet_tf(framework: str) -> Iterator[None]:
    """Mute TensorFlow's own warnings that ART's TF2 code triggers (retracing, persistent tape)."""
    log = logging.getLogger("tensorflow")
    level = log.level
    if framework == "tensorflow":
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _one_hot(labels: np.ndarray, nb_classes: int) -> np.ndarray:
    return np.eye(nb_classes, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]


def _generate(
    request: AttackRequest, cls_name: str, kwargs: dict[str, Any], notes: list[str],
    *, pass_y: bool = True, estimator: Any = None,
) -> AttackOutput:
    """Build ``art.attacks.evasion.<cls_name>(estimator, **kwargs)``, run it and record it.

    ``estimator`` defaults to the cached ``model_form`` (built on ``model.counted``).
    """
    import art.attacks.evasion as evasion

    model, spec = request.model, request.spec
    if estimator is None:
        estimator = ArtAdapter().model_form(model)
    extra = spec.options_for("art")
    kwargs = {**kwargs, **extra}
    if extra:
        notes = [*notes, f"library_options['art'] merged last: {sorted(extra)}"]
    cls = getattr(evasion, cls_name)
    est_name = list(inspect.signature(cls.__init__).parameters)[1]  # "estimator"/"classifier"
    with _quiet_tf(model.framework):
        attack = cls(estimator, **kwargs)
    inner = getattr(attack, "_attack", None)
    if inner is not None:
        notes = [*notes, f"ART dispatched {cls_name} to {type(inner).__name__}"]
    x = np.ascontiguousarray(request.x, dtype=np.float32)
    call_kwargs: dict[str, Any] = {"y": None}
    y = None
    if pass_y:
        labels = request.targets if spec.targeted else request.y
        if labels is None:
            raise ValueError("a targeted request needs targets")
        y = _one_hot(labels, model.nb_classes)
        call_kwargs = {"y": "targets" if spec.targeted else "labels"}
        notes = [*notes, "y passed one-hot (float32)"]
    call = request.announce(LibraryCall(
        callable=f"art.attacks.evasion.{cls_name}",
        kwargs={est_name: "<estimator>", **kwargs}, call_kwargs=call_kwargs, notes=notes,
    ))
    with _quiet_tf(model.framework):
        x_adv = attack.generate(x=x, y=y)
    return AttackOutput(np.asarray(x_adv, dtype=np.float32), call)


def _fgm(request: AttackRequest) -> AttackOutput:
    """FGSM (linf) and FGM (l2): ``FastGradientMethod`` with one full step of size eps."""
    s = request.spec
    kwargs = {"norm": _NORMS[s.norm], "eps": s.eps, "eps_step": s.eps, "targeted": s.targeted,
              "num_random_init": 0, "batch_size": request.batch_size, "minimal": False,
              "summary_writer": False}
    return _generate(request, "FastGradientMethod", kwargs,
                     ["eps_step=eps (unused when minimal=False and num_random_init=0)"])


def _pgd_kwargs(request: AttackRequest, random_init: bool) -> dict[str, Any]:
    s = request.spec
    return {"norm": _NORMS[s.norm], "eps": s.eps, "eps_step": s.step_size, "decay": None,
            "max_iter": s.steps, "targeted": s.targeted,
            "num_random_init": 1 if random_init else 0, "batch_size": request.batch_size,
            "random_eps": False, "summary_writer": False, "verbose": False}


def _bim(request: AttackRequest) -> AttackOutput:
    """BIM: ``BasicIterativeMethod`` (linf only in ART); l2 via PGD without random start."""
    s = request.spec
    if s.norm == "linf":
        kwargs = {"eps": s.eps, "eps_step": s.step_size, "max_iter": s.steps,
                  "targeted": s.targeted, "batch_size": request.batch_size, "verbose": False}
        return _generate(request, "BasicIterativeMethod", kwargs,
                         ["BasicIterativeMethod is ProjectedGradientDescent with norm=inf, "
                          "num_random_init=0"])
    return _generate(request, "ProjectedGradientDescent", _pgd_kwargs(request, False),
                     ["ART's BasicIterativeMethod is linf only: l2 BIM run as "
                      "ProjectedGradientDescent(norm=2, num_random_init=0)"])


def _pgd(request: AttackRequest) -> AttackOutput:
    """PGD: ``ProjectedGradientDescent``; restarts are the harness's, not ART's."""
    s = request.spec
    return _generate(request, "ProjectedGradientDescent", _pgd_kwargs(request, s.random_start),
                     [f"random_start={s.random_start} -> num_random_init={int(s.random_start)} "
                      "(restarts are the harness's)"])


def _mim(request: AttackRequest) -> AttackOutput:
    """MIM: ``MomentumIterativeMethod`` (PGD with momentum ``decay``, L1-normalised grads)."""
    s = request.spec
    kwargs = {"norm": _NORMS[s.norm], "eps": s.eps, "eps_step": s.step_size,
              "decay": float(s.params["decay"]), "max_iter": s.steps, "targeted": s.targeted,
              "batch_size": request.batch_size, "verbose": False}
    return _generate(request, "MomentumIterativeMethod", kwargs,
                     ["ART fixes num_random_init=0 for MomentumIterativeMethod"])


def _apgd(request: AttackRequest) -> AttackOutput:
    """APGD: ``AutoProjectedGradientDescent`` with one random start and an explicit loss."""
    s = request.spec
    kwargs = {"norm": _NORMS[s.norm], "eps": s.eps, "eps_step": s.step_size,
              "max_iter": s.steps, "targeted": s.targeted, "nb_random_init": 1,
              "batch_size": request.batch_size, "loss_type": _APGD_LOSS[s.params["loss"]],
              "verbose": False}
    notes = ["eps_step is APGD's initial step size; nb_random_init=1 (restarts by the harness)",
             "ART APGD needs logits (it refuses probability outputs); model.counted returns "
             "logits (log p for probability models)",
             "with loss_type set, ART wraps the same counted model in its own estimator",
             "ART APGD skips samples already adversarial and returns, for samples it fails on, "
             "the random start point"]
    if s.targeted and s.params["loss"] == "dlr":
        notes.append("ART's targeted DLR is the untargeted DLR with its sign flipped, "
                     "not Croce & Hein's targeted DLR")
    return _generate(request, "AutoProjectedGradientDescent", kwargs, notes)


def _cw(request: AttackRequest) -> AttackOutput:
    """C&W L2: ``CarliniL2Method`` (gradient descent in tanh space with an lr line search)."""
    s, p = request.spec, request.spec.params
    kwargs = {"confidence": float(p["confidence"]), "targeted": s.targeted,
              "learning_rate": float(p["learning_rate"]),
              "binary_search_steps": int(p["binary_search_steps"]), "max_iter": s.steps,
              "initial_const": float(p["c"]), "max_halving": 5, "max_doubling": 5,
              "batch_size": request.batch_size, "verbose": False}
    return _generate(request, "CarliniL2Method", kwargs,
                     ["c -> initial_const; ART optimises with a learning-rate line search "
                      "(max_halving/max_doubling = ART's values, no canonical counterpart), "
                      "not Adam"])


def _ead(request: AttackRequest) -> AttackOutput:
    """EAD: ``ElasticNet``."""
    s, p = request.spec, request.spec.params
    kwargs = {"confidence": float(p["confidence"]), "targeted": s.targeted,
              "learning_rate": float(p["learning_rate"]),
              "binary_search_steps": int(p["binary_search_steps"]), "max_iter": s.steps,
              "beta": float(p["beta"]), "initial_const": float(p["c"]),
              "batch_size": request.batch_size, "decision_rule": str(p["decision_rule"]),
              "verbose": False}
    return _generate(request, "ElasticNet", kwargs, ["c -> initial_const"])


def _deepfool(request: AttackRequest) -> AttackOutput:
    """DeepFool (L2): ``DeepFool``; it ignores ``y`` and attacks the model's own prediction."""
    s, p = request.spec, request.spec.params
    kwargs = {"max_iter": s.steps, "epsilon": float(p["overshoot"]),
              "nb_grads": int(p["candidates"]), "batch_size": request.batch_size,
              "verbose": False}
    notes = ["overshoot -> epsilon (applied once at the end: x + (1+epsilon)*(x_adv-x))",
             "candidates -> nb_grads; ART DeepFool ignores y (starts from the model's prediction)"]
    if int(p["candidates"]) < request.model.nb_classes:
        notes.append("nb_grads picks the union of every sample's top classes, not per sample")
    lo, hi = request.model.bounds
    if hi - lo != 1.0:
        notes.append(f"ART DeepFool multiplies each step by clip range {hi - lo:g}")
    return _generate(request, "DeepFool", kwargs, notes, pass_y=False)


def _jsma(request: AttackRequest) -> AttackOutput:
    """JSMA (targeted only): ``SaliencyMapMethod``; theta is absolute, in input units."""
    p = request.spec.params
    kwargs = {"theta": float(p["theta"]), "gamma": float(p["gamma"]),
              "batch_size": request.batch_size, "verbose": False}
    return _generate(request, "SaliencyMapMethod", kwargs,
                     ["theta is added to each chosen feature (absolute, clipped to bounds); "
                      "gamma is the max fraction of features changed"])


_BOTH = ("linf", "l2")
_MIM_TF = ("ProjectedGradientDescentTensorFlowV2 raises NotImplementedError: 'Momentum "
           "Iterative Attack currently disabled for Tensorflow framework. See issue #2439'")


class ArtAdapter(Adapter):
    """Adapter for ART's evasion attacks on ``PyTorchClassifier``/``TensorFlowV2Classifier``."""

    name = "art"
    package = "adversarial-robustness-toolbox"
    MODULES = {fw: ("art.attacks.evasion", "art.estimators.classification")
               for fw in ("torch", "tensorflow")}
    IMPLS: dict[str, Impl] = {
        "fgsm": Impl(("linf",), _fgm),
        "fgm": Impl(("l2",), _fgm),
        "bim": Impl(_BOTH, _bim),
        "pgd": Impl(_BOTH, _pgd),
        "mim": Impl(_BOTH, _mim, broken={"tensorflow": _MIM_TF}),
        "apgd": Impl(_BOTH, _apgd),
        "cw": Impl(("l2",), _cw),
        "ead": Impl(("l1",), _ead),
        "deepfool": Impl(("l2",), _deepfool, targeted=False,
                         why_not_targeted="ART DeepFool is untargeted only (it ignores y)"),
        "jsma": Impl(("l0",), _jsma, untargeted=False,
                     why_not_untargeted="ART SaliencyMapMethod has no untargeted mode "
                                        "(with y=None it attacks random target classes)"),
    }

    #: Score-/decision-based attacks live in adapters/art_blackbox.py (tests/test_blackbox_art.py).
    IMPLS = {**IMPLS, **BLACKBOX_IMPLS}

    def convert(self, model: WrappedModel) -> Any:
        """``PyTorchClassifier`` or ``TensorFlowV2Classifier`` around ``model.counted``."""
        return _CONVERTERS[model.framework](model)
