"""ART adapter: dispatch, escape hatch, estimators, unsupported reasons, broken entries.

Every supported combination runs in tests/test_adapter_contract.py (in bounds and budget,
recorded with every constructor argument, counted); black-box specifics: test_blackbox_art.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from adapter_contract import N, make_request, make_spec
from conftest import to_layout

from advharness.adapters.art.adapter import ArtAdapter
from advharness.adapters.base import AttackOutput, AttackRequest
from advharness.config.catalogue import CATALOGUE
from advharness.config.spec import AttackSpec
from advharness.models.base import WrappedModel

ADAPTER = ArtAdapter()


def _run(
    model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray], spec: AttackSpec
) -> tuple[AttackRequest, AttackOutput]:
    req = make_request(model, image_batch, spec, batch_size=4)
    model.counter.reset()
    return req, ADAPTER.run(req)


def test_records_pgd_dispatch_and_random_start(
    torch_model: WrappedModel, tf_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    for model, cls in ((torch_model, "PyTorch"), (tf_model, "TensorFlowV2")):
        _, out = _run(model, image_batch, make_spec("pgd", "linf", False, random_start=True))
        assert out.call.kwargs["num_random_init"] == 1
        assert f"ART dispatched ProjectedGradientDescent to ProjectedGradientDescent{cls}" in (out.call.notes)
    _, out = _run(torch_model, image_batch, make_spec("bim", "l2", False))
    assert out.call.callable.endswith("ProjectedGradientDescent")
    assert out.call.kwargs["num_random_init"] == 0 and out.call.kwargs["norm"] == 2


def test_escape_hatch_overrides_and_is_recorded(
    torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    opts = {"art": {"max_iter": 2, "batch_size": N}}
    _, out = _run(
        torch_model, image_batch, make_spec("pgd", "linf", False, random_start=False, library_options=opts)
    )
    assert out.call.kwargs["max_iter"] == 2 and out.call.kwargs["batch_size"] == N
    assert "library_options['art'] merged last: ['batch_size', 'max_iter']" in out.call.notes
    assert torch_model.counter.read().backward == 2 * N  # ART really ran 2 iterations
    bad = make_spec("fgsm", "linf", False, library_options={"art": {"no_such_kwarg": 1}})
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
def test_unsupported_reason(attack: str, kw: dict[str, Any], fw: str, reason: str) -> None:
    """The reason says why (tests/test_adapter_contract.py checks run refuses with it)."""
    spec = AttackSpec(attack=attack, **kw).resolve()
    got = ADAPTER.unsupported_reason(attack, spec.norm, fw, spec.targeted)
    assert got is not None and reason in got


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
