"""CleverHans 4.0.0 black-box attacks: torch SPSA (score-based) and HopSkipJump (decision-based).

Each cell runs under ``model.with_access(spec.threat_model)``, so ``model_fn`` is a query-only
oracle: any gradient request is a recorded violation, and decision-based queries see one-hot
labels only. Budgets are tiny: these check the translation, not attack strength.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import to_layout

from advharness.adapters.base import AttackRequest
from advharness.adapters.cleverhans import CleverHansAdapter
from advharness.config.catalogue import CATALOGUE, FRAMEWORKS
from advharness.config.spec import AttackSpec
from advharness.core.errors import HarnessError, Unsupported
from advharness.models.base import WrappedModel

N = 3
# (attack, norm, framework, targeted): every black-box combination the adapter supports.
SUPPORTED = [
    ("spsa", "linf", "torch", False),
    ("spsa", "linf", "torch", True),
    ("hsj", "l2", "torch", False),
    ("hsj", "l2", "torch", True),
    ("hsj", "linf", "torch", False),
    ("hsj", "linf", "torch", True),
]
SPECS: dict[str, dict[str, Any]] = {
    "spsa": {"eps": 0.1, "steps": 3, "params": {"samples": 8, "delta": 0.02, "learning_rate": 0.02}},
    "hsj": {"steps": 2, "params": {"max_evals": 30, "init_evals": 10, "gamma": 1.0}},
}
PATHS = {
    "spsa": "cleverhans.torch.attacks.spsa.spsa",
    "hsj": "cleverhans.torch.attacks.hop_skip_jump_attack.hop_skip_jump_attack",
}
KEYS = {
    "spsa": {
        "model_fn",
        "x",
        "y",
        "targeted",
        "clip_min",
        "clip_max",
        "eps",
        "nb_iter",
        "norm",
        "early_stop_loss_threshold",
        "learning_rate",
        "delta",
        "spsa_samples",
        "spsa_iters",
        "is_debug",
        "sanity_checks",
    },
    "hsj": {
        "model_fn",
        "x",
        "norm",
        "y_target",
        "image_target",
        "initial_num_evals",
        "max_num_evals",
        "stepsize_search",
        "num_iterations",
        "gamma",
        "constraint",
        "batch_size",
        "verbose",
        "clip_min",
        "clip_max",
    },
}


def _id(combo: tuple[str, str, str, bool]) -> str:
    a, n, f, t = combo
    return f"{a}-{n}-{'tf' if f == 'tensorflow' else f}-{'targeted' if t else 'untargeted'}"


def _spec(attack: str, norm: Any, targeted: bool, **over: Any) -> AttackSpec:
    return AttackSpec(attack=attack, norm=norm, targeted=targeted, **(SPECS[attack] | over))


def _targets(model: WrappedModel, x: np.ndarray) -> np.ndarray:
    """Targets every input can reach: the prediction of the next input (HSJA needs a start)."""
    return np.roll(model.predict(x), -1).astype(np.int64)


def _request(
    model: WrappedModel, batch: tuple[np.ndarray, np.ndarray], spec: AttackSpec, rows: slice = slice(0, N)
) -> AttackRequest:
    x, y = batch
    x = to_layout(x[rows], model.layout)
    return AttackRequest(
        model=model,
        x=x.copy(),
        y=y[rows].astype(np.int64),
        targets=_targets(model, x) if spec.targeted else None,
        spec=spec.resolve(),
        seed=0,
    )


@pytest.fixture
def model(torch_model: WrappedModel) -> WrappedModel:
    import torch

    torch.manual_seed(0)
    return torch_model


def test_support_table_matches_catalogue() -> None:
    ad = CleverHansAdapter()
    got = [
        (a, n, f, t)
        for a, d in CATALOGUE.items()
        for n in d.norms
        for f in FRAMEWORKS
        for t in (False, True)
        if d.threat_model != "white-box" and ad.unsupported_reason(a, n, f, t) is None
    ]
    assert sorted(got) == sorted(SUPPORTED)


@pytest.mark.parametrize("combo", SUPPORTED, ids=[_id(c) for c in SUPPORTED])
def test_attack(
    combo: tuple[str, str, str, bool], model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    attack, norm, _, targeted = combo
    # rows 4..6: the model predicts 2, 5, 6, so each rolled target has a start image (HSJA)
    req = _request(model, image_batch, _spec(attack, norm, targeted), rows=slice(4, 4 + N))
    spec, x0 = req.spec, req.x.copy()
    model.counter.reset()
    with model.with_access(spec.threat_model):
        out = CleverHansAdapter().run(req)
    assert model.violation is None
    counts = model.counter.read()
    assert counts.forward > 0 and counts.backward == 0

    x_adv = out.x_adv
    assert x_adv.shape == req.x.shape and x_adv.dtype == np.float32
    assert np.all(np.isfinite(x_adv)) and not np.shares_memory(x_adv, req.x)
    np.testing.assert_array_equal(req.x, x0)
    lo, hi = model.bounds
    assert x_adv.min() >= lo - 1e-6 and x_adv.max() <= hi + 1e-6
    d = (x_adv - req.x).reshape(N, -1)
    assert np.any(np.abs(d) > 1e-6), "the attack changed nothing"
    labels = req.targets if targeted else model.predict(req.x)
    pred = model.predict(x_adv)
    if attack == "spsa":
        assert np.abs(d).max() <= spec.eps * (1 + 1e-5) + 1e-6  # type: ignore[operator]
    else:  # HSJA returns points on the adversarial side of the boundary
        hit = pred == labels if targeted else pred != labels
        assert np.all(hit), (pred, labels)

    call = out.call
    assert call.callable == PATHS[attack]
    kw = call.kwargs
    assert set(kw) == KEYS[attack]
    assert (kw["clip_min"], kw["clip_max"]) == model.bounds and kw["model_fn"] == "<model_fn>"
    p = spec.params
    if attack == "spsa":
        assert kw == kw | {
            "eps": 0.1,
            "nb_iter": 3,
            "norm": np.inf,
            "spsa_samples": 8,
            "delta": 0.02,
            "learning_rate": 0.02,
            "spsa_iters": 1,
            "early_stop_loss_threshold": None,
            "is_debug": False,
            "sanity_checks": False,
            "targeted": targeted,
            "y": "targets" if targeted else "labels",
        }
    else:
        c = {"linf": np.inf, "l2": 2}[norm]
        assert kw == kw | {
            "constraint": c,
            "norm": c,
            "num_iterations": 2,
            "max_num_evals": p["max_evals"],
            "initial_num_evals": p["init_evals"],
            "gamma": 1.0,
            "stepsize_search": "geometric_progression",
            "verbose": False,
            "batch_size": 256,
        }
        assert (kw["y_target"] is None) is (not targeted)
        assert (kw["image_target"] is None) is (not targeted)
    assert call.notes and call.to_json()


def test_spsa_passes_labels_as_tensors(
    model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    import cleverhans.torch.attacks.spsa as mod
    import torch

    seen: dict[str, Any] = {}
    original = mod.spsa

    def spy(**kwargs: Any) -> Any:
        if not seen:  # the adapter's call (spsa then calls itself once per sample)
            seen.update(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(mod, "spsa", spy)
    spec = _spec("spsa", "linf", False, steps=1, library_options={"cleverhans": {"spsa_iters": 2}})
    req = _request(model, image_batch, spec, rows=slice(0, 2))
    with model.with_access("score-based"):
        out = CleverHansAdapter().run(req)
        assert seen["model_fn"] is model.counted  # the score-based oracle
    assert seen["spsa_iters"] == 2 and model.violation is None
    assert seen["y"].dtype == torch.int64 and seen["y"].tolist() == req.y.tolist()
    assert any("spsa_iters=2 (harness value 1)" in n for n in out.call.notes)
    # 2 samples x (1 step x 2 iters x 2*8 mirrored + 1 loss query)
    assert model.counter.read().forward == 2 * (2 * 16 + 1)


def test_hsj_targeted_without_start_image_returns_input(
    model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    """A target no input is classified as: nothing to start from, row returned unchanged."""
    req = _request(model, image_batch, _spec("hsj", "l2", True), rows=slice(0, 2))
    pred = model.predict(req.x)
    missing = next(c for c in range(10) if c not in set(pred.tolist()))
    targets = np.array([missing, pred[0]], np.int64)  # row 1 -> row 0's class: feasible...
    req = AttackRequest(model=model, x=req.x, y=req.y, targets=targets, spec=req.spec, seed=0)
    with model.with_access("decision-based"):
        out = CleverHansAdapter().run(req)
    assert model.violation is None
    np.testing.assert_array_equal(out.x_adv[0], req.x[0])
    if pred[1] != pred[0]:  # ...unless it is already that class
        assert model.predict(out.x_adv[1:])[0] == pred[0]
    assert any("no input of their target class" in n for n in out.call.notes)


def test_hsj_linf_float_gamma_really_crashes(model: WrappedModel) -> None:
    """Why the adapter passes gamma as a 0-d tensor for linf: a float gamma raises."""
    import torch
    from cleverhans.torch.attacks.hop_skip_jump_attack import hop_skip_jump_attack

    from advharness.adapters.cleverhans.blackbox import HSJ_LINF_TYPEERROR

    x = torch.full((1, 1, 28, 28), 0.5)
    kw = {
        "norm": np.inf,
        "constraint": np.inf,
        "num_iterations": 1,
        "max_num_evals": 10,
        "initial_num_evals": 10,
        "verbose": False,
        "clip_min": 0.0,
        "clip_max": 1.0,
    }
    with model.with_access("decision-based"), pytest.raises(TypeError) as err:
        hop_skip_jump_attack(model.counted, x, gamma=1.0, **kw)
    assert f"{err.type.__name__}: {err.value}".startswith(HSJ_LINF_TYPEERROR)
    assert err.traceback[-1].name == "binary_search_batch"
    with model.with_access("decision-based"):
        out = hop_skip_jump_attack(model.counted, x, gamma=torch.tensor(1.0), **kw)
    assert out.shape == x.shape


def test_hsj_norm_argument_is_ignored(model: WrappedModel) -> None:
    """CleverHans HSJA's ``norm`` does nothing: the adapter relies on ``constraint``."""
    import torch
    from cleverhans.torch.attacks.hop_skip_jump_attack import hop_skip_jump_attack

    x = torch.from_numpy(np.full((1, 1, 28, 28), 0.5, np.float32))
    kw = {
        "constraint": 2,
        "num_iterations": 1,
        "max_num_evals": 10,
        "initial_num_evals": 10,
        "verbose": False,
        "clip_min": 0.0,
        "clip_max": 1.0,
        "gamma": 1.0,
    }
    outs = []
    for norm in (2, np.inf):
        torch.manual_seed(0)
        with model.with_access("decision-based"):
            outs.append(hop_skip_jump_attack(model.counted, x, norm, **kw))
    torch.testing.assert_close(outs[0], outs[1])


def test_gradient_request_is_a_violation(model: WrappedModel) -> None:
    """The oracle really refuses gradients (so backward == 0 above means something)."""
    import torch

    x = torch.zeros((1, 1, 28, 28), requires_grad=True)
    with model.with_access("score-based"), pytest.raises(RuntimeError, match="violation"):
        model.counted(x)
    assert model.violation is not None


@pytest.mark.parametrize(
    ("attack", "norm", "fw", "expected"),
    [
        (
            "spsa",
            "linf",
            "tensorflow",
            "broken in the installed version: ValueError: Argument(s) not recognized: {'lr': 0.01}",
        ),
        ("hsj", "l2", "tensorflow", "cleverhans has no hsj for tensorflow"),
        ("hsj", "linf", "tensorflow", "cleverhans has no hsj for tensorflow"),
        *[
            (a, CATALOGUE[a].norms[0], f, f"cleverhans 4.0.0 has no {a} attack")
            for a in (
                "square",
                "zoo",
                "simba",
                "pixel",
                "threshold",
                "boundary",
                "geoda",
                "signopt",
                "gaussian_blur",
                "salt_and_pepper",
                "contrast",
                "blended_noise",
            )
            for f in ("torch", "tensorflow")
        ],
    ],
)
def test_unsupported(
    attack: str, norm: Any, fw: str, expected: str, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    ad = CleverHansAdapter()
    for targeted in (False, True):
        reason = ad.unsupported_reason(attack, norm, fw, targeted)
        assert reason is not None and expected in reason

    class _Stub:  # run must refuse before touching the model
        framework = fw

    spec = AttackSpec(attack=attack, norm=norm, eps=0.5).resolve()
    req = AttackRequest(
        model=_Stub(),
        x=image_batch[0][:2],
        y=image_batch[1][:2],  # type: ignore[arg-type]
        targets=None,
        spec=spec,
        seed=0,
    )
    with pytest.raises(Unsupported) as err:
        ad.run(req)
    assert expected in str(err.value)


def test_tf2_spsa_is_really_broken() -> None:
    """The ``broken`` entry quotes the error the installed CleverHans raises on Keras 3."""
    import keras
    import tensorflow as tf
    from cleverhans.tf2.attacks.spsa import spsa

    from advharness.adapters.cleverhans.blackbox import TF_SPSA_BROKEN

    net = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    x = tf.constant(np.full((1, 4, 4, 1), 0.5, np.float32))
    with pytest.raises(ValueError, match="not recognized") as err:
        spsa(net, x, tf.constant([0]), 0.1, 1, clip_min=0.0, clip_max=1.0, learning_rate=0.01, spsa_samples=2)
    assert TF_SPSA_BROKEN.startswith(f"{err.type.__name__}: {err.value}")
    assert err.traceback[-1].frame.f_globals["__name__"].startswith("keras")
    with pytest.raises(ValueError, match="batch_size of 1"):  # and batch size 1 only
        spsa(net, tf.concat([x, x], 0), tf.constant([0, 1]), 0.1, 1)


def test_hsj_rejects_harness_owned_options(
    model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    spec = _spec("hsj", "l2", False, library_options={"cleverhans": {"image_target": None}})
    with pytest.raises(HarnessError, match="set by the harness"):
        CleverHansAdapter().run(_request(model, image_batch, spec))
