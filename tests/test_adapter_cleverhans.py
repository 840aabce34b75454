"""CleverHans 4.0.0 adapter: support table, step checks, escape hatch, chunks, broken entries.

Every supported combination runs in tests/test_adapter_contract.py (translation, recording,
counting, the loss moving the attack's way); black-box ones: test_blackbox_cleverhans.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from adapter_contract import N, cases, make_request, make_spec
from conftest import to_layout

from advharness.adapters.base import AttackOutput
from advharness.adapters.cleverhans import CleverHansAdapter
from advharness.config.catalogue import CATALOGUE
from advharness.core.errors import HarnessError, Unsupported
from advharness.models.base import WrappedModel

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


def test_support_table_matches_catalogue() -> None:
    got = [(c.attack, c.norm, c.framework, c.targeted) for c in cases(library="cleverhans", whitebox=True)]
    assert sorted(got) == sorted(SUPPORTED)  # black-box attacks: tests/test_blackbox_cleverhans.py
    assert CleverHansAdapter().version_hint() == "4.0.0"


@pytest.mark.parametrize("fw", ["torch", "tf"])
@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
def test_fgsm_counts_one_row_each_way(
    fw: str,
    targeted: bool,
    get_model: Callable[[str], WrappedModel],
    image_batch: tuple[np.ndarray, np.ndarray],
) -> None:
    model = get_model(FW[fw])
    req = make_request(model, image_batch, make_spec("fgsm", "linf", targeted))
    model.counter.reset()
    CleverHansAdapter().run(req)
    counts = model.counter.read()
    assert (counts.forward, counts.backward) == (N, N)


@pytest.mark.parametrize("attack", ["bim", "pgd"])
@pytest.mark.parametrize("fw", ["torch", "tf"])
def test_step_larger_than_eps_is_unsupported(
    attack: str, fw: str, get_model: Callable[[str], WrappedModel], image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    model = get_model(FW[fw])
    req = make_request(model, image_batch, make_spec(attack, "linf", False, step_size=0.2))
    model.counter.reset()
    with pytest.raises(Unsupported, match=r"eps_iter <= eps; got step_size 0.2 > eps 0.1"):
        CleverHansAdapter().run(req)
    assert model.counter.read().forward == 0  # raised before calling CleverHans


def test_mim_step_larger_than_eps_runs(
    tf_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    """tf2 MIM has no eps_iter <= eps assertion, so nothing to refuse."""
    req = make_request(tf_model, image_batch, make_spec("mim", "linf", False, step_size=0.2))
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
def test_unsupported(attack: str, norm: Any, fw: str, expected: str) -> None:
    """The reason says why (tests/test_adapter_contract.py checks run refuses with it, before
    touching anything of the model but its framework)."""
    ad = CleverHansAdapter()
    for targeted in (False, True):
        reason = ad.unsupported_reason(attack, norm, fw, targeted)
        assert reason is not None and expected in reason


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
    options = {"cleverhans": {"sanity_checks": True, "eps": 0.05}}
    spec = make_spec("fgsm", "linf", False, library_options=options)
    out = CleverHansAdapter().run(make_request(torch_model, image_batch, spec))
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
    spec = make_spec("pgd", "linf", False, library_options={"cleverhans": options})
    with pytest.raises(HarnessError, match=match):
        CleverHansAdapter().run(make_request(torch_model, image_batch, spec))


def test_chunks_by_batch_size(torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]) -> None:
    """Chunks of 3 give the batch's result up to rounding. FGM (L2), not FGSM: CleverHans
    takes a batch-MEAN loss, so chunks scale the gradient by 1/3 instead of 1/16 and round
    it differently; FGM's step is continuous in the gradient (1e-6 is ~10x its rounding),
    whereas FGSM's sign of a component within rounding of zero could flip by 2 eps."""
    ad, spec = CleverHansAdapter(), make_spec("fgm", "l2", True)
    req = make_request(torch_model, image_batch, spec)
    whole = ad.run(req)
    chunked: AttackOutput = ad.run(make_request(torch_model, image_batch, spec, batch_size=3))
    assert not np.allclose(whole.x_adv, req.x, atol=1e-3)  # the attack moved the inputs
    np.testing.assert_allclose(chunked.x_adv, whole.x_adv, atol=1e-6)
    assert "called once per chunk of 3 inputs" in chunked.call.notes
    assert ad.model_form(torch_model) is torch_model.counted
