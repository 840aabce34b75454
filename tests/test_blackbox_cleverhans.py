"""CleverHans 4.0.0 black-box attacks: torch SPSA (score-based) and HopSkipJump (decision-based).

Each cell runs under ``model.with_access(spec.threat_model)``, so ``model_fn`` is a query-only
oracle: any gradient request is a recorded violation, and decision-based queries see one-hot
labels only. Every supported combination runs in tests/test_adapter_contract.py (tiny
budgets: the translation, the record and the counts, not attack strength); these tests check
what is specific to CleverHans.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from adapter_contract import cases, make_request, make_spec

from advharness.adapters.cleverhans import CleverHansAdapter
from advharness.config.catalogue import CATALOGUE
from advharness.core.errors import HarnessError
from advharness.models.base import WrappedModel

# (attack, norm, framework, targeted): every black-box combination the adapter supports.
SUPPORTED = [
    ("spsa", "linf", "torch", False),
    ("spsa", "linf", "torch", True),
    ("hsj", "l2", "torch", False),
    ("hsj", "l2", "torch", True),
    ("hsj", "linf", "torch", False),
    ("hsj", "linf", "torch", True),
]


@pytest.fixture
def model(torch_model: WrappedModel) -> WrappedModel:
    import torch

    torch.manual_seed(0)
    return torch_model


def test_support_table_matches_catalogue() -> None:
    got = [(c.attack, c.norm, c.framework, c.targeted) for c in cases(library="cleverhans", whitebox=False)]
    assert sorted(got) == sorted(SUPPORTED)


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
    spec = make_spec("spsa", "linf", False, steps=1, library_options={"cleverhans": {"spsa_iters": 2}})
    req = make_request(model, image_batch, spec, rows=2)
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
    req = make_request(model, image_batch, make_spec("hsj", "l2", True), rows=2)
    pred = model.predict(req.x)
    missing = next(c for c in range(10) if c not in set(pred.tolist()))
    targets = np.array([missing, pred[0]], np.int64)  # row 1 -> row 0's class: feasible...
    req = replace(req, targets=targets)
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
def test_unsupported(attack: str, norm: Any, fw: str, expected: str) -> None:
    """The reason says why (tests/test_adapter_contract.py checks run refuses with it, before
    touching anything of the model but its framework)."""
    ad = CleverHansAdapter()
    for targeted in (False, True):
        reason = ad.unsupported_reason(attack, norm, fw, targeted)
        assert reason is not None and expected in reason


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
    spec = make_spec("hsj", "l2", False, library_options={"cleverhans": {"image_target": None}})
    with pytest.raises(HarnessError, match="set by the harness"):
        CleverHansAdapter().run(make_request(model, image_batch, spec, rows=2))
