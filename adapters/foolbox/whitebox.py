"""Foolbox 3.3.4 adapter: canonical specs -> ``foolbox.attacks`` classes, every kwarg explicit.

The model goes to Foolbox through ``model.counted`` (so every query is counted) wrapped once in
``foolbox.PyTorchModel`` / ``foolbox.TensorFlowModel`` with ``preprocessing=None``. Fixed-budget
attacks are called with ``epsilons=eps`` and return Foolbox's ``clipped`` output; minimum-norm
attacks with ``epsilons=None`` and return ``raw``. Foolbox's ``success`` is ignored (the harness
referees) and outputs are never repaired (C&W/EAD all-zero failures pass through as they are).
Foolbox, eagerpy, torch and TensorFlow are imported lazily, inside the functions that use them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from advharness.adapters.base import AttackOutput, AttackRequest, Impl
from advharness.adapters.foolbox.common import KwargsAndNotes, run_foolbox
from advharness.config.spec import ResolvedSpec

#: The ``foolbox.attacks`` class for each canonical attack and norm (the norm is in the name).
CLASSES: dict[str, dict[str, str]] = {
    "fgsm": {"linf": "LinfFastGradientAttack"},
    "fgm": {"l2": "L2FastGradientAttack"},
    "bim": {"linf": "LinfBasicIterativeAttack", "l2": "L2BasicIterativeAttack"},
    "pgd": {"linf": "LinfProjectedGradientDescentAttack", "l2": "L2ProjectedGradientDescentAttack"},
    "mim": {"linf": "LinfMomentumIterativeFastGradientMethod", "l2": "L2MomentumIterativeFastGradientMethod"},
    "cw": {"l2": "L2CarliniWagnerAttack"},
    "ead": {"l1": "EADAttack"},
    "deepfool": {"l2": "L2DeepFoolAttack", "linf": "LinfDeepFoolAttack"},
    "fmn": {"l0": "L0FMNAttack", "l1": "L1FMNAttack", "l2": "L2FMNAttack", "linf": "LInfFMNAttack"},
    "ddn": {"l2": "DDNAttack"},
}

NO_TARGETED_FAST = (
    "Foolbox's fast gradient attacks raise ValueError('unsupported criterion') "
    "for a TargetedMisclassification criterion (fast_gradient_method.py:34-96)"
)
NO_TARGETED_DEEPFOOL = (
    "Foolbox DeepFool ranks candidate classes by the model's own logits and "
    "uses a TargetedMisclassification criterion only as the stop test "
    "(deepfool.py:118-143), so it never aims at the target"
)
CW_ZEROS = (
    "Foolbox returns an all-zero image for samples it found no adversarial for "
    "(carlini_wagner.py:147 / ead.py:144); passed through unrepaired"
)


# -- per-attack translation: ResolvedSpec -> (constructor kwargs, notes) ----------------------
def _fast_gradient(spec: ResolvedSpec) -> KwargsAndNotes:
    return {"random_start": False}, [
        "one step of size eps: Foolbox fixes rel_stepsize=1.0 and steps=1 and has no step-size argument"
    ]


def _iterative(spec: ResolvedSpec, random_start: bool | None = None) -> dict[str, Any]:
    assert spec.step_size is not None and spec.steps is not None  # resolved by the spec
    start = spec.random_start if random_start is None else random_start
    return {"abs_stepsize": float(spec.step_size), "steps": int(spec.steps), "random_start": bool(start)}


def _bim(spec: ResolvedSpec) -> KwargsAndNotes:
    return _iterative(spec, random_start=False), ["returns the last iterate"]


def _pgd(spec: ResolvedSpec) -> KwargsAndNotes:
    notes = ["returns the last iterate; restarts are done by the harness"]
    if spec.random_start:
        region = {"linf": "the eps cube", "l2": "the L2 eps ball"}[spec.norm]
        notes.append(f"random start: uniform in {region}, then clipped to bounds")
    return _iterative(spec), notes


def _mim(spec: ResolvedSpec) -> KwargsAndNotes:
    kwargs = {"momentum": float(spec.params["decay"]), **_iterative(spec, random_start=False)}
    return kwargs, [
        "decay -> momentum; Foolbox accumulates the already-normalised gradient (sign(g) for "
        "Linf, g/||g||_2 for L2) rather than g/||g||_1 as in Dong et al. "
        "(gradient_descent_base.py:156, mi_fgsm.py:38)"
    ]


def _cw(spec: ResolvedSpec) -> KwargsAndNotes:
    p = spec.params
    kwargs = {
        "binary_search_steps": int(p["binary_search_steps"]),
        "steps": int(spec.steps or 0),
        "stepsize": float(p["learning_rate"]),
        "confidence": float(p["confidence"]),
        "initial_const": float(p["c"]),
        "abort_early": False,
    }
    notes = [
        "c -> initial_const, learning_rate -> stepsize (Adam)",
        "abort_early=False: exactly `steps` Adam steps per binary-search step",
        CW_ZEROS,
    ]
    if kwargs["binary_search_steps"] >= 10:
        notes.append(
            "binary_search_steps >= 10: Foolbox's last step restarts from the upper "
            "bound of c (carlini_wagner.py:154)"
        )
    return kwargs, notes


def _ead(spec: ResolvedSpec) -> KwargsAndNotes:
    p = spec.params
    kwargs = {
        "binary_search_steps": int(p["binary_search_steps"]),
        "steps": int(spec.steps or 0),
        "initial_stepsize": float(p["learning_rate"]),
        "confidence": float(p["confidence"]),
        "initial_const": float(p["c"]),
        "regularization": float(p["beta"]),
        "decision_rule": str(p["decision_rule"]),
        "abort_early": False,
    }
    return kwargs, [
        "c -> initial_const, learning_rate -> initial_stepsize (square-root decay), beta -> regularization",
        "abort_early=False: exactly `steps` ISTA steps per binary-search step",
        CW_ZEROS,
    ]


def _deepfool(spec: ResolvedSpec) -> KwargsAndNotes:
    p = spec.params
    kwargs = {
        "steps": int(spec.steps or 0),
        "candidates": int(p["candidates"]),
        "overshoot": float(p["overshoot"]),
        "loss": "logits",
    }
    return kwargs, [
        "candidate classes are the model's top classes at the clean input; labels "
        "only decide when a sample is done"
    ]


def _fmn(spec: ResolvedSpec) -> KwargsAndNotes:
    p = spec.params
    kwargs = {
        "steps": int(spec.steps or 0),
        "max_stepsize": float(p["max_stepsize"]),
        "min_stepsize": float(p["min_stepsize"]),
        "gamma": float(p["gamma"]),
        "init_attack": None,
        "binary_search_steps": int(p["binary_search_steps"]),
    }
    notes = ["init_attack=None: starts from the clean input, so binary_search_steps is unused"]
    if spec.norm == "l2":
        notes.append(
            "Foolbox 3.3.4 L2FMNAttack.project uses min(1, norms / norms) == 1, so the "
            "L2-ball projection is a no-op (fast_minimum_norm.py:398)"
        )
    return kwargs, notes


def _ddn(spec: ResolvedSpec) -> KwargsAndNotes:
    p = spec.params
    kwargs = {
        "init_epsilon": float(p["init_epsilon"]),
        "steps": int(spec.steps or 0),
        "gamma": float(p["gamma"]),
    }
    return kwargs, [
        "DDNAttack is a MinimizationAttack in Foolbox 3.3.4: eps is not used while optimising; "
        "the result is Foolbox's projection of the minimal adversarial onto the eps ball",
        "step size is hard-coded: cosine annealing from 1.0 to 0.01 (ddn.py:97)",
    ]


# -- the shared call --------------------------------------------------------------------------


def _run_attack(request: AttackRequest, translate: Callable[[ResolvedSpec], KwargsAndNotes]) -> AttackOutput:
    """Translate the spec with ``translate`` and run the Foolbox attack."""
    spec = request.spec
    kwargs, notes = translate(spec)
    return run_foolbox(request, CLASSES[spec.attack][spec.norm], kwargs, notes)


def _impl(attack: str, translate: Callable[[ResolvedSpec], KwargsAndNotes], **kw: Any) -> Impl:
    return Impl(norms=tuple(CLASSES[attack]), run=partial(_run_attack, translate=translate), **kw)


# -- model conversion -------------------------------------------------------------------------


#: Gradient-based Foolbox attacks (merged with the decision-based ones in ``FoolboxAdapter.IMPLS``).
WHITEBOX_IMPLS: dict[str, Impl] = {
    "fgsm": _impl("fgsm", _fast_gradient, targeted=False, why_not_targeted=NO_TARGETED_FAST),
    "fgm": _impl("fgm", _fast_gradient, targeted=False, why_not_targeted=NO_TARGETED_FAST),
    "bim": _impl("bim", _bim),
    "pgd": _impl("pgd", _pgd),
    "mim": _impl("mim", _mim),
    "cw": _impl("cw", _cw),
    "ead": _impl("ead", _ead),
    "deepfool": _impl("deepfool", _deepfool, targeted=False, why_not_targeted=NO_TARGETED_DEEPFOOL),
    "fmn": _impl("fmn", _fmn),
    "ddn": _impl("ddn", _ddn),
}
