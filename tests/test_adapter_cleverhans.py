"""CleverHans 4.0.0 adapter: support table, translation, recording, counting, broken entries."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import to_layout

from advharness.adapters.base import AttackOutput, AttackRequest
from advharness.adapters.cleverhans import CleverHansAdapter
from advharness.config.catalogue import CATALOGUE, FRAMEWORKS
from advharness.config.spec import AttackSpec
from advharness.core.errors import HarnessError, Unsupported
from advharness.models.base import WrappedModel

N = 8
FW = {"torch": "torch", "tf": "tensorflow"}

# (attack, norm, framework, targeted) combinations the adapter supports: the whole table.
SUPPORTED = [
    (a, n, f, t)
    for a, norms, fws in [
        ("fgsm", ("linf",), ("torch", "tensorflow")),
        ("fgm", ("l2",), ("torch", "tensorflow")),
        ("bim", ("linf", "l2"), ("torch", "tensorflow")),
        ("pgd", ("linf", "l2"), ("torch", "tensorflow")),
        ("mim", ("linf", "l2"), ("tensorflow",)),
        ("cw", ("l2",), ("torch",)),
    ]
    for n in norms
    for f in fws
    for t in (False, True)
]

SPECS: dict[str, dict[str, Any]] = {
    "fgsm": {},
    "fgm": {},
    "bim": {"steps": 3, "step_size": 0.5},  # step_size is a fraction of eps here
    "pgd": {"steps": 3, "step_size": 0.5, "random_start": True},
    "mim": {"steps": 3, "step_size": 0.5, "params": {"decay": 0.9}},
    "cw": {"steps": 10, "params": {"binary_search_steps": 2, "learning_rate": 0.2, "c": 10.0}},
}
EPS = {"linf": 0.1, "l2": 1.5}

PATHS = {
    ("fgsm", "torch"): "cleverhans.torch.attacks.fast_gradient_method.fast_gradient_method",
    ("fgsm", "tensorflow"): "cleverhans.tf2.attacks.fast_gradient_method.fast_gradient_method",
    ("fgm", "torch"): "cleverhans.torch.attacks.fast_gradient_method.fast_gradient_method",
    ("fgm", "tensorflow"): "cleverhans.tf2.attacks.fast_gradient_method.fast_gradient_method",
    ("bim", "torch"): "cleverhans.torch.attacks.projected_gradient_descent.projected_gradient_descent",
    ("bim", "tensorflow"): "cleverhans.tf2.attacks.basic_iterative_method.basic_iterative_method",
    ("pgd", "torch"): "cleverhans.torch.attacks.projected_gradient_descent.projected_gradient_descent",
    ("pgd", "tensorflow"): "cleverhans.tf2.attacks.projected_gradient_descent.projected_gradient_descent",
    ("mim", "tensorflow"): "cleverhans.tf2.attacks.momentum_iterative_method.momentum_iterative_method",
    ("cw", "torch"): "cleverhans.torch.attacks.carlini_wagner_l2.carlini_wagner_l2",
}

BASE = {"model_fn", "x", "clip_min", "clip_max", "y", "targeted"}
FIXED = BASE | {"eps", "norm"}
ITER = FIXED | {"eps_iter", "nb_iter", "sanity_checks"}
KEYS = {
    ("fgsm", "torch"): FIXED | {"sanity_checks"},
    ("fgsm", "tensorflow"): FIXED | {"sanity_checks", "loss_fn"},
    ("fgm", "torch"): FIXED | {"sanity_checks"},
    ("fgm", "tensorflow"): FIXED | {"sanity_checks", "loss_fn"},
    ("bim", "torch"): ITER | {"rand_init", "rand_minmax"},
    ("bim", "tensorflow"): ITER | {"rand_init", "rand_minmax"},
    ("pgd", "torch"): ITER | {"rand_init", "rand_minmax"},
    ("pgd", "tensorflow"): ITER | {"rand_init", "rand_minmax", "loss_fn"},
    ("mim", "tensorflow"): ITER | {"decay_factor"},
    ("cw", "torch"): BASE
    | {"n_classes", "lr", "confidence", "initial_const", "binary_search_steps", "max_iterations"},
}


def _id(combo: tuple[str, str, str, bool]) -> str:
    a, n, f, t = combo
    return f"{a}-{n}-{'tf' if f == 'tensorflow' else f}-{'targeted' if t else 'untargeted'}"


def _spec(attack: str, norm: Any, targeted: bool, **over: Any) -> AttackSpec:
    kw = dict(SPECS[attack])
    if "step_size" in kw:
        kw["step_size"] *= EPS[norm]
    if CATALOGUE[attack].kind == "fixed":
        kw["eps"] = EPS[norm]
    kw.update(over)
    return AttackSpec(attack=attack, norm=norm, targeted=targeted, **kw)


def _request(
    model: WrappedModel,
    batch: tuple[np.ndarray, np.ndarray],
    spec: AttackSpec,
    n: int = N,
    batch_size: int = 256,
) -> AttackRequest:
    x, y = batch
    x = to_layout(x[:n], model.layout)
    targets = ((y[:n] + 1) % model.nb_classes).astype(np.int64) if spec.targeted else None
    return AttackRequest(
        model=model,
        x=x.copy(),
        y=y[:n].astype(np.int64),
        targets=targets,
        spec=spec.resolve(),
        seed=0,
        batch_size=batch_size,
    )


def _model(request: pytest.FixtureRequest, fw: str) -> WrappedModel:
    """Build only the model a test needs (TF is slow to build); seed the RNG CleverHans uses."""
    if fw == "torch":
        import torch

        torch.manual_seed(0)
        return request.getfixturevalue("torch_model")
    import keras

    model = request.getfixturevalue("tf_model")
    keras.utils.set_random_seed(0)
    return model


def _ce(model: WrappedModel, x: np.ndarray, labels: np.ndarray) -> float:
    z = model.predict_logits(x).astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(z)), labels]))


def _norms(d: np.ndarray, norm: str) -> np.ndarray:
    flat = d.reshape(len(d), -1)
    return np.abs(flat).max(axis=1) if norm == "linf" else np.linalg.norm(flat, axis=1)


def test_support_table_matches_catalogue() -> None:
    ad = CleverHansAdapter()
    got = [
        (a, n, f, t)
        for a, d in CATALOGUE.items()
        for n in d.norms
        for f in FRAMEWORKS
        for t in (False, True)
        if d.threat_model == "white-box" and ad.unsupported_reason(a, n, f, t) is None
    ]  # black-box attacks: tests/test_blackbox_cleverhans.py
    assert sorted(got) == sorted(SUPPORTED)
    assert ad.version_hint() == "4.0.0"


@pytest.mark.parametrize("combo", SUPPORTED, ids=[_id(c) for c in SUPPORTED])
def test_attack(
    combo: tuple[str, str, str, bool],
    request: pytest.FixtureRequest,
    image_batch: tuple[np.ndarray, np.ndarray],
) -> None:
    attack, norm, fw, targeted = combo
    model = _model(request, fw)
    req = _request(model, image_batch, _spec(attack, norm, targeted))
    x0 = req.x.copy()
    model.counter.reset()
    out = CleverHansAdapter().run(req)
    x_adv = out.x_adv

    assert x_adv.shape == req.x.shape and x_adv.dtype == np.float32
    assert np.all(np.isfinite(x_adv))
    lo, hi = model.bounds
    assert x_adv.min() >= lo - 1e-6 and x_adv.max() <= hi + 1e-6
    np.testing.assert_array_equal(req.x, x0)  # input untouched
    assert not np.shares_memory(x_adv, req.x)
    dist = _norms(x_adv - req.x, norm)
    assert np.any(dist > 1e-6), "the attack changed nothing"
    spec = req.spec
    labels = req.targets if targeted else req.y
    assert labels is not None
    if spec.kind == "fixed":
        assert spec.eps is not None
        assert np.all(dist <= spec.eps * (1 + 1e-5) + 1e-6), dist.max()
        # the loss moves in the attack's direction: y/targeted translated correctly
        before, after = _ce(model, req.x, labels), _ce(model, x_adv, labels)
        assert (after < before) if targeted else (after > before)
    else:  # CW returns the input where it failed; changed rows must be adversarial
        pred = model.predict(x_adv)
        changed = dist > 1e-6
        hit = pred == labels if targeted else pred != labels
        assert np.all(hit[changed]) and np.mean(hit) >= 0.75

    call = out.call
    assert call.callable == PATHS[attack, fw]
    kw = call.kwargs
    assert set(kw) == KEYS[attack, fw]
    assert kw["model_fn"] == "<model_fn>" and kw["x"] == "inputs"
    assert kw["y"] == ("targets" if targeted else "labels") and kw["targeted"] is targeted
    assert (kw["clip_min"], kw["clip_max"]) == model.bounds
    if "norm" in kw:
        assert kw["norm"] == {"linf": np.inf, "l2": 2}[norm] and kw["eps"] == spec.eps
    if "sanity_checks" in kw:
        assert kw["sanity_checks"] is False
    if "nb_iter" in kw:
        assert kw["nb_iter"] == spec.steps and kw["eps_iter"] == pytest.approx(spec.step_size)
    if "rand_init" in kw:
        assert kw["rand_init"] is (attack == "pgd") and kw["rand_minmax"] == spec.eps
    if attack == "mim":
        assert kw["decay_factor"] == 0.9
    if attack == "cw":
        assert kw == kw | {
            "n_classes": 10,
            "lr": 0.2,
            "confidence": 0.0,
            "initial_const": 10.0,
            "binary_search_steps": 2,
            "max_iterations": 10,
        }
    if "loss_fn" in kw:
        assert kw["loss_fn"] == "tf.nn.sparse_softmax_cross_entropy_with_logits"
    assert call.notes and call.to_json()

    counts = model.counter.read()
    assert counts.forward > 0 and counts.backward > 0
    if fw == "torch":  # CleverHans leaves the module as it found it
        module = model.module  # type: ignore[attr-defined]
        assert not module.training and not model.counted.training
        assert all(p.grad is None and not p.requires_grad for p in module.parameters())


@pytest.mark.parametrize("fw", ["torch", "tf"])
@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
def test_fgsm_counts_one_row_each_way(
    fw: str, targeted: bool, request: pytest.FixtureRequest, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    model = _model(request, FW[fw])
    req = _request(model, image_batch, _spec("fgsm", "linf", targeted))
    model.counter.reset()
    CleverHansAdapter().run(req)
    counts = model.counter.read()
    assert (counts.forward, counts.backward) == (N, N)


@pytest.mark.parametrize("attack", ["bim", "pgd"])
@pytest.mark.parametrize("fw", ["torch", "tf"])
def test_step_larger_than_eps_is_unsupported(
    attack: str, fw: str, request: pytest.FixtureRequest, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    model = _model(request, FW[fw])
    req = _request(model, image_batch, _spec(attack, "linf", False, step_size=0.2))
    model.counter.reset()
    with pytest.raises(Unsupported, match=r"eps_iter <= eps; got step_size 0.2 > eps 0.1"):
        CleverHansAdapter().run(req)
    assert model.counter.read().forward == 0  # raised before calling CleverHans


def test_mim_step_larger_than_eps_runs(
    tf_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    """tf2 MIM has no eps_iter <= eps assertion, so nothing to refuse."""
    req = _request(tf_model, image_batch, _spec("mim", "linf", False, step_size=0.2))
    out = CleverHansAdapter().run(req)
    assert np.abs(out.x_adv - req.x).max() <= 0.1 * (1 + 1e-5) + 1e-6


@pytest.mark.parametrize(
    ("attack", "norm", "fw", "expected"),
    [
        ("mim", "linf", "torch", "cleverhans has no mim for torch"),
        ("mim", "l2", "torch", "cleverhans has no mim for torch"),
        ("cw", "l2", "tensorflow", "broken in the installed version: TypeError: 'list' object"),
        *[
            (a, CATALOGUE[a].norms[0], f, f"cleverhans 4.0.0 has no {a} attack")
            for a in ("deepfool", "jsma", "ead", "apgd", "fmn", "ddn")
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
    with pytest.raises(Unsupported, match=expected.replace("(", r"\(")):
        ad.run(req)


def test_tf2_cw_is_really_broken() -> None:
    """The ``broken`` entry quotes the error the installed CleverHans raises on Keras 3."""
    import keras
    from cleverhans.tf2.attacks.carlini_wagner_l2 import carlini_wagner_l2

    from advharness.adapters.cleverhans.whitebox import TF_CW_BROKEN

    net = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    x = np.full((2, 4, 4, 1), 0.5, np.float32)
    with pytest.raises(TypeError, match="'list' object is not callable") as err:
        carlini_wagner_l2(net, x, y=None, clip_min=0.0, clip_max=1.0, binary_search_steps=1, max_iterations=1)
    assert f"{err.type.__name__}: {err.value}" in TF_CW_BROKEN
    assert err.traceback[-1].name == "_attack"


def test_tf2_bim_default_sanity_checks_still_crash() -> None:
    """Why the adapter passes sanity_checks=False (numpy>=1.24 ragged np.all)."""
    import keras
    import tensorflow as tf
    from cleverhans.tf2.attacks.basic_iterative_method import basic_iterative_method

    net = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    x = tf.constant(np.full((2, 4, 4, 1), 0.5, np.float32))
    with pytest.raises(ValueError, match="inhomogeneous"):
        basic_iterative_method(
            net, x, 0.1, 0.05, 1, np.inf, clip_min=0.0, clip_max=1.0, y=tf.constant([0, 1])
        )


def test_escape_hatch_passes_and_records(
    torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    import cleverhans.torch.attacks.fast_gradient_method as mod
    import torch

    seen: dict[str, Any] = {}
    original = mod.fast_gradient_method

    def spy(**kwargs: Any) -> Any:
        seen.update(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(mod, "fast_gradient_method", spy)
    spec = _spec("fgsm", "linf", False, library_options={"cleverhans": {"sanity_checks": True, "eps": 0.05}})
    out = CleverHansAdapter().run(_request(torch_model, image_batch, spec))
    assert seen["sanity_checks"] is True and seen["eps"] == 0.05
    assert seen["model_fn"] is torch_model.counted and isinstance(seen["x"], torch.Tensor)
    assert seen["y"].dtype == torch.int64 and seen["clip_min"] == 0.0
    assert out.call.kwargs["sanity_checks"] is True and out.call.kwargs["eps"] == 0.05
    assert any("sanity_checks=True (harness value False)" in n for n in out.call.notes)
    assert np.abs(out.x_adv - to_layout(image_batch[0][:N], "NCHW")).max() <= 0.05 + 1e-6


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"not_an_arg": 1}, "has no such argument"),
        ({"y": [1, 2]}, "set by the harness"),
    ],
)
def test_escape_hatch_rejects_bad_options(
    options: dict[str, Any], match: str, torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    spec = _spec("pgd", "linf", False, library_options={"cleverhans": options})
    with pytest.raises(HarnessError, match=match):
        CleverHansAdapter().run(_request(torch_model, image_batch, spec))


def test_chunks_by_batch_size(torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]) -> None:
    """Chunks of 3 give the batch's result up to rounding. FGM (L2), not FGSM: CleverHans
    takes a batch-MEAN loss, so chunks scale the gradient by 1/3 instead of 1/16 and round
    it differently; FGM's step is continuous in the gradient (1e-6 is ~10x its rounding),
    whereas FGSM's sign of a component within rounding of zero could flip by 2 eps."""
    ad, spec = CleverHansAdapter(), _spec("fgm", "l2", True)
    req = _request(torch_model, image_batch, spec)
    whole = ad.run(req)
    chunked: AttackOutput = ad.run(_request(torch_model, image_batch, spec, batch_size=3))
    assert not np.allclose(whole.x_adv, req.x, atol=1e-3)  # the attack moved the inputs
    np.testing.assert_allclose(chunked.x_adv, whole.x_adv, atol=1e-6)
    assert "called once per chunk of 3 inputs" in chunked.call.notes
    assert ad.model_form(torch_model) is torch_model.counted
