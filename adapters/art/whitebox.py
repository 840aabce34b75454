"""ART (adversarial-robustness-toolbox 1.20) adapter: canonical specs -> ART evasion attacks.

Every constructor argument that affects the result is passed explicitly (ART defaults are
never relied upon), the escape hatch ``library_options["art"]`` is merged last, and all
queries go through ``model.counted`` via the cached estimator from ``model_form``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from advharness.adapters.art.common import generate
from advharness.adapters.base import AttackOutput, AttackRequest, Impl

_NORMS: dict[str, float] = {"linf": np.inf, "l2": 2, "l1": 1}
_APGD_LOSS: dict[str, str] = {"ce": "cross_entropy", "dlr": "difference_logits_ratio"}


def _fgm(request: AttackRequest) -> AttackOutput:
    """FGSM (linf) and FGM (l2): ``FastGradientMethod`` with one full step of size eps."""
    s = request.spec
    kwargs = {
        "norm": _NORMS[s.norm],
        "eps": s.eps,
        "eps_step": s.eps,
        "targeted": s.targeted,
        "num_random_init": 0,
        "batch_size": request.batch_size,
        "minimal": False,
        "summary_writer": False,
    }
    return generate(
        request,
        "FastGradientMethod",
        kwargs,
        ["eps_step=eps (unused when minimal=False and num_random_init=0)"],
    )


def _pgd_kwargs(request: AttackRequest, random_init: bool) -> dict[str, Any]:
    s = request.spec
    return {
        "norm": _NORMS[s.norm],
        "eps": s.eps,
        "eps_step": s.step_size,
        "decay": None,
        "max_iter": s.steps,
        "targeted": s.targeted,
        "num_random_init": 1 if random_init else 0,
        "batch_size": request.batch_size,
        "random_eps": False,
        "summary_writer": False,
        "verbose": False,
    }


def _bim(request: AttackRequest) -> AttackOutput:
    """BIM: ``BasicIterativeMethod`` (linf only in ART); l2 via PGD without random start."""
    s = request.spec
    if s.norm == "linf":
        kwargs = {
            "eps": s.eps,
            "eps_step": s.step_size,
            "max_iter": s.steps,
            "targeted": s.targeted,
            "batch_size": request.batch_size,
            "verbose": False,
        }
        return generate(
            request,
            "BasicIterativeMethod",
            kwargs,
            ["BasicIterativeMethod is ProjectedGradientDescent with norm=inf, num_random_init=0"],
        )
    return generate(
        request,
        "ProjectedGradientDescent",
        _pgd_kwargs(request, False),
        [
            "ART's BasicIterativeMethod is linf only: l2 BIM run as "
            "ProjectedGradientDescent(norm=2, num_random_init=0)"
        ],
    )


def _pgd(request: AttackRequest) -> AttackOutput:
    """PGD: ``ProjectedGradientDescent``; restarts are the harness's, not ART's."""
    s = request.spec
    return generate(
        request,
        "ProjectedGradientDescent",
        _pgd_kwargs(request, s.random_start),
        [
            f"random_start={s.random_start} -> num_random_init={int(s.random_start)} "
            "(restarts are the harness's)"
        ],
    )


def _mim(request: AttackRequest) -> AttackOutput:
    """MIM: ``MomentumIterativeMethod`` (PGD with momentum ``decay``, L1-normalised grads)."""
    s = request.spec
    kwargs = {
        "norm": _NORMS[s.norm],
        "eps": s.eps,
        "eps_step": s.step_size,
        "decay": float(s.params["decay"]),
        "max_iter": s.steps,
        "targeted": s.targeted,
        "batch_size": request.batch_size,
        "verbose": False,
    }
    return generate(
        request,
        "MomentumIterativeMethod",
        kwargs,
        ["ART fixes num_random_init=0 for MomentumIterativeMethod"],
    )


def _apgd(request: AttackRequest) -> AttackOutput:
    """APGD: ``AutoProjectedGradientDescent`` with one random start and an explicit loss."""
    s = request.spec
    kwargs = {
        "norm": _NORMS[s.norm],
        "eps": s.eps,
        "eps_step": s.step_size,
        "max_iter": s.steps,
        "targeted": s.targeted,
        "nb_random_init": 1,
        "batch_size": request.batch_size,
        "loss_type": _APGD_LOSS[s.params["loss"]],
        "verbose": False,
    }
    notes = [
        "eps_step is APGD's initial step size; nb_random_init=1 (restarts by the harness)",
        "ART APGD needs logits (it refuses probability outputs); model.counted returns "
        "logits (log p for probability models)",
        "with loss_type set, ART wraps the same counted model in its own estimator",
        "ART APGD skips samples already adversarial and returns, for samples it fails on, "
        "the random start point",
    ]
    if s.targeted and s.params["loss"] == "dlr":
        notes.append(
            "ART's targeted DLR is the untargeted DLR with its sign flipped, not Croce & Hein's targeted DLR"
        )
    return generate(request, "AutoProjectedGradientDescent", kwargs, notes)


def _cw(request: AttackRequest) -> AttackOutput:
    """C&W L2: ``CarliniL2Method`` (gradient descent in tanh space with an lr line search)."""
    s, p = request.spec, request.spec.params
    kwargs = {
        "confidence": float(p["confidence"]),
        "targeted": s.targeted,
        "learning_rate": float(p["learning_rate"]),
        "binary_search_steps": int(p["binary_search_steps"]),
        "max_iter": s.steps,
        "initial_const": float(p["c"]),
        "max_halving": 5,
        "max_doubling": 5,
        "batch_size": request.batch_size,
        "verbose": False,
    }
    return generate(
        request,
        "CarliniL2Method",
        kwargs,
        [
            "c -> initial_const; ART optimises with a learning-rate line search "
            "(max_halving/max_doubling = ART's values, no canonical counterpart), "
            "not Adam"
        ],
    )


def _ead(request: AttackRequest) -> AttackOutput:
    """EAD: ``ElasticNet``."""
    s, p = request.spec, request.spec.params
    kwargs = {
        "confidence": float(p["confidence"]),
        "targeted": s.targeted,
        "learning_rate": float(p["learning_rate"]),
        "binary_search_steps": int(p["binary_search_steps"]),
        "max_iter": s.steps,
        "beta": float(p["beta"]),
        "initial_const": float(p["c"]),
        "batch_size": request.batch_size,
        "decision_rule": str(p["decision_rule"]),
        "verbose": False,
    }
    return generate(request, "ElasticNet", kwargs, ["c -> initial_const"])


def _deepfool(request: AttackRequest) -> AttackOutput:
    """DeepFool (L2): ``DeepFool``; it ignores ``y`` and attacks the model's own prediction."""
    s, p = request.spec, request.spec.params
    kwargs = {
        "max_iter": s.steps,
        "epsilon": float(p["overshoot"]),
        "nb_grads": int(p["candidates"]),
        "batch_size": request.batch_size,
        "verbose": False,
    }
    notes = [
        "overshoot -> epsilon (applied once at the end: x + (1+epsilon)*(x_adv-x))",
        "candidates -> nb_grads; ART DeepFool ignores y (starts from the model's prediction)",
    ]
    if int(p["candidates"]) < request.model.nb_classes:
        notes.append("nb_grads picks the union of every sample's top classes, not per sample")
    lo, hi = request.model.bounds
    if hi - lo != 1.0:
        notes.append(f"ART DeepFool multiplies each step by clip range {hi - lo:g}")
    return generate(request, "DeepFool", kwargs, notes, pass_y=False)


def _jsma(request: AttackRequest) -> AttackOutput:
    """JSMA (targeted only): ``SaliencyMapMethod``; theta is absolute, in input units."""
    p = request.spec.params
    kwargs = {
        "theta": float(p["theta"]),
        "gamma": float(p["gamma"]),
        "batch_size": request.batch_size,
        "verbose": False,
    }
    return generate(
        request,
        "SaliencyMapMethod",
        kwargs,
        [
            "theta is added to each chosen feature (absolute, clipped to bounds); "
            "gamma is the max fraction of features changed"
        ],
    )


_BOTH = ("linf", "l2")
_MIM_TF = (
    "ProjectedGradientDescentTensorFlowV2 raises NotImplementedError: 'Momentum "
    "Iterative Attack currently disabled for Tensorflow framework. See issue #2439'"
)


#: Gradient-based ART attacks (merged with the black-box ones in ``ArtAdapter.IMPLS``).
WHITEBOX_IMPLS: dict[str, Impl] = {
    "fgsm": Impl(("linf",), _fgm),
    "fgm": Impl(("l2",), _fgm),
    "bim": Impl(_BOTH, _bim),
    "pgd": Impl(_BOTH, _pgd),
    "mim": Impl(_BOTH, _mim, broken={"tensorflow": _MIM_TF}),
    "apgd": Impl(_BOTH, _apgd),
    "cw": Impl(("l2",), _cw),
    "ead": Impl(("l1",), _ead),
    "deepfool": Impl(
        ("l2",), _deepfool, targeted=False, why_not_targeted="ART DeepFool is untargeted only (it ignores y)"
    ),
    "jsma": Impl(
        ("l0",),
        _jsma,
        untargeted=False,
        why_not_untargeted="ART SaliencyMapMethod has no untargeted mode "
        "(with y=None it attacks random target classes)",
    ),
}
