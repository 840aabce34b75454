"""ART adapter: every supported combination runs in bounds and budget, is recorded and counted."""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import combos, to_layout

from advharness.adapters.art.adapter import ArtAdapter
from advharness.adapters.base import AttackOutput, AttackRequest
from advharness.config.catalogue import CATALOGUE
from advharness.config.spec import AttackSpec
from advharness.core.errors import Unsupported
from advharness.models.base import WrappedModel

N = 8
ADAPTER = ArtAdapter()
FIXED_EPS = {"linf": 0.1, "l2": 1.0}
SMALL: dict[str, dict[str, Any]] = {
    "bim": {"steps": 3},
    "pgd": {"steps": 3},
    "mim": {"steps": 3},
    "apgd": {"steps": 3},
    "cw": {"steps": 3, "params": {"binary_search_steps": 1, "learning_rate": 0.1, "c": 10.0}},
    "ead": {"steps": 3, "params": {"binary_search_steps": 1, "learning_rate": 0.1, "c": 10.0}},
    "deepfool": {"steps": 3},
    "jsma": {"params": {"gamma": 0.1}},
}


def _cases() -> list[Any]:
    white = [a for a in ADAPTER.IMPLS if CATALOGUE[a].threat_model == "white-box"]
    return combos(ADAPTER, white)  # black-box entries: tests/test_blackbox_art.py


def _spec(attack: str, norm: str, targeted: bool, **extra: Any) -> AttackSpec:
    kw: dict[str, Any] = {
        "attack": attack,
        "norm": norm,
        "targeted": targeted,
        **SMALL.get(attack, {}),
        **extra,
    }
    if CATALOGUE[attack].kind == "fixed":
        kw.setdefault("eps", FIXED_EPS[norm])
    return AttackSpec(**kw)


def _request(
    model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray], spec: AttackSpec, batch_size: int = 4
) -> AttackRequest:
    """Labels are the model's own predictions, so every sample starts correctly classified."""
    x = to_layout(image_batch[0][:N], model.layout)
    pred = model.predict(x)
    targets = (pred + 1) % model.nb_classes if spec.targeted else None
    return AttackRequest(model, x, pred, targets, spec.resolve(), seed=0, batch_size=batch_size)


def _run(
    model: WrappedModel,
    image_batch: tuple[np.ndarray, np.ndarray],
    spec: AttackSpec,
) -> tuple[AttackRequest, AttackOutput]:
    req = _request(model, image_batch, spec)
    model.counter.reset()
    return req, ADAPTER.run(req)


@pytest.mark.parametrize(("attack", "norm", "fw", "targeted"), _cases())
def test_supported_combination(
    attack: str,
    norm: str,
    fw: str,
    targeted: bool,
    get_model: Callable[[str], WrappedModel],
    image_batch: tuple[np.ndarray, np.ndarray],
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    import art.attacks.evasion as evasion

    caplog.set_level(logging.WARNING)

    model = get_model(fw)
    req, out = _run(model, image_batch, _spec(attack, norm, targeted))
    s, x, x_adv = req.spec, req.x, out.x_adv
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    lo, hi = model.bounds
    assert x_adv.min() >= lo - 1e-6 and x_adv.max() <= hi + 1e-6
    delta = (x_adv - x).reshape(len(x), -1).astype(np.float64)
    assert np.any(np.abs(delta).max(axis=1) > 1e-6), "no sample changed"
    if s.kind == "fixed":
        assert s.eps is not None
        size = np.abs(delta).max(axis=1) if norm == "linf" else np.linalg.norm(delta, axis=1)
        assert np.all(size <= s.eps * (1 + 1e-5) + 1e-6)

    call = out.call
    cls_name = call.callable.removeprefix("art.attacks.evasion.")
    params = list(inspect.signature(getattr(evasion, cls_name).__init__).parameters)[1:]
    assert set(call.kwargs) == set(params), "every constructor argument is passed explicitly"
    assert call.kwargs[params[0]] == "<estimator>"
    expected = {
        "batch_size": req.batch_size,
        "targeted": targeted,
        "max_iter": s.steps,
        "eps": s.eps,
        "eps_step": s.step_size,
        "verbose": False,
        "summary_writer": False,
    }
    for key, value in expected.items():
        if key in call.kwargs:
            assert call.kwargs[key] == value, key
    assert call.call_kwargs == {"y": None if attack == "deepfool" else ("targets" if targeted else "labels")}
    assert call.notes and call.to_json()
    counts = model.counter.read()
    assert counts.forward > 0 and counts.backward > 0
    assert "%|" not in capfd.readouterr().err, "tqdm bar printed"
    loud = [r for r in caplog.records if r.name.split(".")[0] in ("art", "tensorflow")]
    assert not loud, [r.getMessage()[:80] for r in loud]


def test_records_pgd_dispatch_and_random_start(
    torch_model: WrappedModel, tf_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    for model, cls in ((torch_model, "PyTorch"), (tf_model, "TensorFlowV2")):
        _, out = _run(model, image_batch, _spec("pgd", "linf", False, random_start=True))
        assert out.call.kwargs["num_random_init"] == 1
        assert f"ART dispatched ProjectedGradientDescent to ProjectedGradientDescent{cls}" in (out.call.notes)
    _, out = _run(torch_model, image_batch, _spec("bim", "l2", False))
    assert out.call.callable.endswith("ProjectedGradientDescent")
    assert out.call.kwargs["num_random_init"] == 0 and out.call.kwargs["norm"] == 2


def test_escape_hatch_overrides_and_is_recorded(
    torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    opts = {"art": {"max_iter": 2, "batch_size": N}}
    _, out = _run(torch_model, image_batch, _spec("pgd", "linf", False, library_options=opts))
    assert out.call.kwargs["max_iter"] == 2 and out.call.kwargs["batch_size"] == N
    assert "library_options['art'] merged last: ['batch_size', 'max_iter']" in out.call.notes
    assert torch_model.counter.read().backward == 2 * N  # ART really ran 2 iterations
    bad = _spec("fgsm", "linf", False, library_options={"art": {"no_such_kwarg": 1}})
    with pytest.raises(TypeError, match="no_such_kwarg"):
        _run(torch_model, image_batch, bad)


def test_convert_is_cached_and_counted(torch_model: WrappedModel, tf_model: WrappedModel) -> None:
    from art.estimators.classification import PyTorchClassifier, TensorFlowV2Classifier

    for model, cls in ((torch_model, PyTorchClassifier), (tf_model, TensorFlowV2Classifier)):
        est = ADAPTER.model_form(model)
        assert isinstance(est, cls) and ArtAdapter().model_form(model) is est
        assert est.model is model.counted
        assert tuple(est.clip_values) == model.bounds and est.nb_classes == model.nb_classes
        assert est.channels_first == (model.layout == "NCHW")


UNSUPPORTED = [
    pytest.param("deepfool", {"norm": "linf"}, "torch", "supports l2, not linf", id="deepfool-linf"),
    pytest.param("deepfool", {"targeted": True}, "torch", "untargeted only", id="deepfool-targeted"),
    pytest.param("jsma", {}, "tensorflow", "no untargeted mode", id="jsma-untargeted"),
    pytest.param("mim", {"eps": 0.1}, "tensorflow", "issue #2439", id="mim-tensorflow"),
    pytest.param("ddn", {"eps": 1.0}, "torch", "has no ddn attack", id="ddn"),
    pytest.param("fmn", {"norm": "l0"}, "tensorflow", "has no fmn attack", id="fmn"),
    # black-box attacks (tests/test_blackbox_art.py runs the supported ones)
    pytest.param("square", {"eps": 0.1, "targeted": True}, "torch", "no targeted mode", id="square-targeted"),
    pytest.param("signopt", {"targeted": True}, "tensorflow", "needs x_init", id="signopt-targeted"),
    pytest.param("geoda", {"targeted": True}, "torch", "no targeted mode", id="geoda-targeted"),
    pytest.param("geoda", {}, "torch", "np.mat", id="geoda-torch"),
    pytest.param("geoda", {}, "tensorflow", "np.mat", id="geoda-tensorflow"),
    pytest.param("spsa", {"eps": 0.1}, "torch", "has no spsa attack", id="spsa"),
]


@pytest.mark.parametrize(("attack", "kw", "fw", "reason"), UNSUPPORTED)
def test_unsupported(
    attack: str,
    kw: dict[str, Any],
    fw: str,
    reason: str,
    get_model: Callable[[str], WrappedModel],
    image_batch: tuple[np.ndarray, np.ndarray],
) -> None:
    spec = AttackSpec(attack=attack, **kw).resolve()
    got = ADAPTER.unsupported_reason(attack, spec.norm, fw, spec.targeted)
    assert got is not None and reason in got
    model = get_model(fw)
    x = to_layout(image_batch[0][:2], model.layout)
    targets = np.array([1, 2]) if spec.targeted else None
    with pytest.raises(Unsupported, match=re.escape(reason)):
        ADAPTER.run(AttackRequest(model, x, image_batch[1][:2], targets, spec, seed=0))


def _art_tf_mim(tf_model: WrappedModel, x: np.ndarray) -> None:
    """ART directly (no adapter): MomentumIterativeMethod on a TensorFlowV2Classifier."""
    import keras
    from art.attacks.evasion import MomentumIterativeMethod
    from art.estimators.classification import TensorFlowV2Classifier

    est = TensorFlowV2Classifier(
        model=tf_model.counted,
        nb_classes=10,
        input_shape=(28, 28, 1),
        clip_values=(0.0, 1.0),
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    MomentumIterativeMethod(est, eps=0.1, eps_step=0.01, max_iter=2, verbose=False).generate(x)


BROKEN_CHECKS = {("mim", "tensorflow"): (_art_tf_mim, NotImplementedError)}


def test_every_broken_entry_has_a_check() -> None:
    broken = {
        (a, fw)
        for a, impl in ADAPTER.IMPLS.items()
        for fw in impl.broken
        if CATALOGUE[a].threat_model == "white-box"
    }
    assert broken == set(BROKEN_CHECKS)


@pytest.mark.parametrize(("attack", "fw"), list(BROKEN_CHECKS))
def test_broken_reason_is_still_true(
    attack: str, fw: str, get_model: Callable[[str], WrappedModel], image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    check, exc = BROKEN_CHECKS[(attack, fw)]
    model = get_model(fw)
    quoted = re.search(r"'(.+)'", ADAPTER.IMPLS[attack].broken[fw])
    assert quoted is not None
    with pytest.raises(exc) as info:
        check(model, to_layout(image_batch[0][:2], model.layout))
    assert quoted.group(1) in str(info.value)


def test_art_deepfool_ignores_y_and_jsma_without_y_picks_random_targets(
    torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    """The why-not reasons of deepfool/jsma, checked against ART directly."""
    from art.attacks.evasion import DeepFool, SaliencyMapMethod

    est = ArtAdapter().convert(torch_model)
    x = image_batch[0][:4]
    eye = np.eye(10, dtype=np.float32)
    deepfool = DeepFool(est, max_iter=2, verbose=False)
    a = deepfool.generate(x, y=eye[[0, 1, 2, 3]])
    b = deepfool.generate(x, y=eye[[5, 6, 7, 8]])
    np.testing.assert_array_equal(a, b)
    jsma = SaliencyMapMethod(est, theta=1.0, gamma=0.05, verbose=False)
    outs = []
    for seed in (0, 1, 2):
        np.random.seed(seed)
        outs.append(jsma.generate(x))
    assert any(not np.array_equal(outs[0], o) for o in outs[1:])
