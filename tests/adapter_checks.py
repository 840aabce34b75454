"""Per-library checks of the adapter contract table (``tests/test_adapter_contract.py``).

How each library proves its call record complete (a spy on what the library received, the
callable's signature, the expected keywords) and that the attack moved the inputs its way.
Each table maps a library name to its check.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from adapter_contract import Case, Ran, lp_norms
from conftest import spy_constructor

from advharness.config.catalogue import CATALOGUE
from advharness.models.base import WrappedModel


# -- what each library received: spies installed before the run ----------------------------
def _foolbox_class(case: Case) -> str:
    from advharness.adapters.foolbox import blackbox, noise, whitebox

    if case.attack == "noise":  # the contract runs the catalogue's default distribution
        return noise.CLASSES[case.norm, str(CATALOGUE["noise"].params["distribution"])]
    return whitebox.CLASSES[case.attack][case.norm] if case.whitebox else blackbox.CLASSES[case.attack]


def _spy_foolbox(case: Case, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The constructor kwargs Foolbox's attack class receives."""
    import foolbox.attacks as fa

    from advharness.adapters.foolbox import noise

    seen = spy_constructor(monkeypatch, fa, _foolbox_class(case))
    # the L-inf subclass must derive from the spied class: built afresh, not from the cache
    monkeypatch.setattr(noise, "linf_uniform_class", noise.linf_uniform_class.__wrapped__)
    return seen


def _spy_cleverhans(case: Case, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The kwargs of the first call of the CleverHans function (SPSA then calls itself)."""
    for (_, fw), other in CH_PATHS.items():  # import first: modules bind each other's functions
        if fw == case.framework:
            importlib.import_module(other.rpartition(".")[0])
    module_name, _, name = CH_PATHS[case.attack, case.framework].rpartition(".")
    module = importlib.import_module(module_name)
    seen: dict[str, Any] = {}
    original = getattr(module, name)

    def spy(**kwargs: Any) -> Any:
        if not seen:
            seen.update(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(module, name, spy)
    return seen


def _no_spy(case: Case, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    return {}


SPIES: dict[str, Callable[[Case, pytest.MonkeyPatch], dict[str, Any]]] = {
    "art": _no_spy,
    "foolbox": _spy_foolbox,
    "cleverhans": _spy_cleverhans,
}


# -- each library's call record --------------------------------------------------------------
#: ART black-box attacks: canonical parameter -> the ART keyword it must land in.
ART_MAPPED: dict[str, dict[str, str]] = {
    "square": {"p_init": "p_init"},
    "zoo": {
        "c": "initial_const",
        "coordinates": "nb_parallel",
        "learning_rate": "learning_rate",
        "binary_search_steps": "binary_search_steps",
        "confidence": "confidence",
    },
    "pixel": {"pixels": "th"},
    "boundary": {"spherical_step": "delta", "source_step": "epsilon"},
    "hsj": {"max_evals": "max_eval", "init_evals": "init_eval"},
    "simba": {"basis": "attack", "epsilon": "epsilon"},
}
NORM_VALUE = {"linf": np.inf, "l2": 2, "l1": 1}


def _art_record(ran: Ran, seen: dict[str, Any]) -> None:
    """Every constructor argument explicit; the spec's values where ART takes them."""
    import art.attacks.evasion as evasion

    case, s, call = ran.case, ran.request.spec, ran.out.call
    cls_name = call.callable.removeprefix("art.attacks.evasion.")
    names = list(inspect.signature(getattr(evasion, cls_name).__init__).parameters)[1:]
    assert set(call.kwargs) == set(names), "every constructor argument is passed explicitly"
    assert call.kwargs[names[0]] == "<estimator>"
    expected = {
        "batch_size": 1 if cls_name in ("ZooAttack", "SimBA") else ran.request.batch_size,
        "targeted": case.targeted,
        "max_iter": s.steps,
        "eps": s.eps,
        "eps_step": s.step_size,
        "verbose": False,
        "summary_writer": False,
        **s.options_for("art"),
    }
    for key, value in expected.items():
        if key in call.kwargs:
            assert call.kwargs[key] == value, key
    for canon, kw in ART_MAPPED.get(case.attack, {}).items():
        assert call.kwargs[kw] == s.params[canon], (canon, kw)
    if "norm" in call.kwargs:
        assert call.kwargs["norm"] == NORM_VALUE[case.norm]
    y = None if case.attack == "deepfool" else ("targets" if case.targeted else "labels")
    assert call.call_kwargs == {"y": y}
    assert call.notes


def _foolbox_record(ran: Ran, seen: dict[str, Any]) -> None:
    """The record is what the constructor received, and it leaves nothing to a default."""
    import foolbox.attacks as fa

    case, s, call = ran.case, ran.request.spec, ran.out.call
    class_name = _foolbox_class(case)
    if case.attack == "noise" and case.norm == "linf":  # a subclass correcting the draws' scale
        assert call.callable.endswith(f".{class_name}") and any("max(|p|)" in n for n in call.notes)
    else:
        assert call.callable == f"foolbox.attacks.{class_name}"
    assert call.kwargs == seen, "every constructor kwarg passed is recorded"
    real = getattr(fa, class_name).__mro__[1]  # under the spy: the spied class
    defaulted = set(inspect.signature(real).parameters) - {"rel_stepsize"} - set(seen)
    assert not defaulted, f"relies on Foolbox defaults for {defaulted}"  # rel_: abs_stepsize wins
    if not case.whitebox:
        assert s.threat_model == "decision-based"  # Foolbox's black-box attacks
    if seen.get("init_attack") is not None:  # the nested init attack is explicit too
        init = seen["init_attack"]
        assert set(inspect.signature(type(init)).parameters) == set(vars(init)) - {"_distance"} | {"distance"}
        assert any("init_attack=LinearSearchBlendedUniformNoiseAttack(" in n for n in call.notes)
    assert call.call_kwargs == {
        "epsilons": s.eps if s.kind == "fixed" else None,
        "criterion": "TargetedMisclassification(targets)" if case.targeted else "Misclassification(labels)",
    }


CH_PATHS = {
    (a, fw): f"cleverhans.{'torch' if fw == 'torch' else 'tf2'}.attacks.{module}.{module}"
    for a, module, fws in [
        ("fgsm", "fast_gradient_method", ("torch", "tensorflow")),
        ("fgm", "fast_gradient_method", ("torch", "tensorflow")),
        ("bim", "projected_gradient_descent", ("torch",)),
        ("bim", "basic_iterative_method", ("tensorflow",)),
        ("pgd", "projected_gradient_descent", ("torch", "tensorflow")),
        ("mim", "momentum_iterative_method", ("tensorflow",)),
        ("cw", "carlini_wagner_l2", ("torch",)),
        ("spsa", "spsa", ("torch",)),
        ("hsj", "hop_skip_jump_attack", ("torch",)),
    ]
    for fw in fws
}
_BASE = {"model_fn", "x", "clip_min", "clip_max", "y", "targeted"}
_FIXED = _BASE | {"eps", "norm", "sanity_checks"}
_ITER = _FIXED | {"eps_iter", "nb_iter"}
CH_KEYS = {
    ("fgsm", "torch"): _FIXED,
    ("fgsm", "tensorflow"): _FIXED | {"loss_fn"},
    ("fgm", "torch"): _FIXED,
    ("fgm", "tensorflow"): _FIXED | {"loss_fn"},
    ("bim", "torch"): _ITER | {"rand_init", "rand_minmax"},
    ("bim", "tensorflow"): _ITER | {"rand_init", "rand_minmax"},
    ("pgd", "torch"): _ITER | {"rand_init", "rand_minmax"},
    ("pgd", "tensorflow"): _ITER | {"rand_init", "rand_minmax", "loss_fn"},
    ("mim", "tensorflow"): _ITER | {"decay_factor"},
    ("cw", "torch"): _BASE
    | {"n_classes", "lr", "confidence", "initial_const", "binary_search_steps", "max_iterations"},
    ("spsa", "torch"): _FIXED
    | {
        "nb_iter",
        "early_stop_loss_threshold",
        "learning_rate",
        "delta",
        "spsa_samples",
        "spsa_iters",
        "is_debug",
    },
    ("hsj", "torch"): {
        *("model_fn", "x", "norm", "y_target", "image_target", "initial_num_evals", "max_num_evals"),
        *("stepsize_search", "num_iterations", "gamma", "constraint", "batch_size", "verbose"),
        *("clip_min", "clip_max"),
    },
}


def _cleverhans_record(ran: Ran, seen: dict[str, Any]) -> None:
    """The recorded keys are exactly the function's arguments, valued as the spec says."""
    case, s, call, model = ran.case, ran.request.spec, ran.out.call, ran.model
    kw, t, p = call.kwargs, case.targeted, s.params
    assert call.callable == CH_PATHS[case.attack, case.framework]
    assert set(kw) == CH_KEYS[case.attack, case.framework] == set(seen)
    for key, value in kw.items():  # the numbers recorded are the numbers CleverHans got
        if value is None or isinstance(value, bool | int | float):
            assert (seen[key] is None) if value is None else float(seen[key]) == float(value), key
    assert kw["model_fn"] == "<model_fn>" and kw["x"] == "inputs" and seen["model_fn"] is ran.oracle
    assert (kw["clip_min"], kw["clip_max"]) == model.bounds
    if "targeted" in kw:
        assert kw["y"] == ("targets" if t else "labels") and kw["targeted"] is t
    if "norm" in kw:
        assert kw["norm"] == NORM_VALUE[case.norm]
    if "eps" in kw:
        assert kw["eps"] == s.eps
    if "sanity_checks" in kw:
        assert kw["sanity_checks"] is False
    if "nb_iter" in kw:
        assert kw["nb_iter"] == s.steps
    if "eps_iter" in kw:
        assert kw["eps_iter"] == pytest.approx(s.step_size)
    if "rand_init" in kw:
        assert kw["rand_init"] is (case.attack == "pgd") and kw["rand_minmax"] == s.eps
    if "loss_fn" in kw:
        assert kw["loss_fn"] == "tf.nn.sparse_softmax_cross_entropy_with_logits"
    expected: dict[str, Any] = {
        "mim": {"decay_factor": p.get("decay")},
        "cw": {
            "n_classes": model.nb_classes,
            "lr": p.get("learning_rate"),
            "confidence": p.get("confidence"),
            "initial_const": p.get("c"),
            "binary_search_steps": p.get("binary_search_steps"),
            "max_iterations": s.steps,
        },
        "spsa": {
            "spsa_samples": p.get("samples"),
            "delta": p.get("delta"),
            "learning_rate": p.get("learning_rate"),
            "spsa_iters": 1,
            "early_stop_loss_threshold": None,
            "is_debug": False,
        },
        "hsj": {
            "constraint": NORM_VALUE[case.norm],
            "num_iterations": s.steps,
            "max_num_evals": p.get("max_evals"),
            "initial_num_evals": p.get("init_evals"),
            "gamma": p.get("gamma"),
            "stepsize_search": "geometric_progression",
            "verbose": False,
            "batch_size": ran.request.batch_size,
            "y_target": "targets" if t else None,
            "image_target": "nearest input classified as the target" if t else None,
        },
    }.get(case.attack, {})
    assert kw == kw | expected
    assert call.notes


RECORDS: dict[str, Callable[[Ran, dict[str, Any]], None]] = {
    "art": _art_record,
    "foolbox": _foolbox_record,
    "cleverhans": _cleverhans_record,
}


# -- the attack moved the inputs its way -----------------------------------------------------
def _goal(ran: Ran) -> tuple[np.ndarray, np.ndarray]:
    """Per row: reached the attack's goal; changed at all."""
    req, x_adv = ran.request, ran.out.x_adv
    pred = ran.model.predict(x_adv)
    hit = pred == req.targets if ran.case.targeted else pred != req.y
    return hit, lp_norms(x_adv - req.x, "linf") > 1e-6


def _cross_entropy(model: WrappedModel, x: np.ndarray, labels: np.ndarray) -> float:
    z = model.predict_logits(x).astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(z)), labels]))


def _art_effect(ran: Ran) -> None:
    if ran.case.whitebox:
        assert _goal(ran)[1].any(), "no sample changed"


def _foolbox_effect(ran: Ran) -> None:
    hit, changed = _goal(ran)
    if ran.case.whitebox:
        assert changed.any(), "no sample changed"
        assert hit.any(), "no sample fooled"


def _cleverhans_effect(ran: Ran) -> None:
    """Fixed budget: the loss moves the attack's way (y/targeted translated correctly);
    C&W returns the input where it fails, so changed rows must be adversarial; HSJA returns
    points on the adversarial side of the boundary."""
    hit, changed = _goal(ran)
    req, s = ran.request, ran.request.spec
    assert changed.any(), "the attack changed nothing"
    labels = req.targets if ran.case.targeted else req.y
    assert labels is not None
    if s.kind == "fixed" and ran.case.whitebox:
        before, after = (_cross_entropy(ran.model, x, labels) for x in (req.x, ran.out.x_adv))
        assert (after < before) if ran.case.targeted else (after > before)
    elif ran.case.attack == "cw":
        assert np.all(hit[changed]) and np.mean(hit) >= 0.75
    elif ran.case.attack == "hsj":
        assert np.all(hit), hit


EFFECTS: dict[str, Callable[[Ran], None]] = {
    "art": _art_effect,
    "foolbox": _foolbox_effect,
    "cleverhans": _cleverhans_effect,
}
