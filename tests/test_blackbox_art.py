"""ART black-box attacks: parameter translations, the softmax estimator, broken GeoDA,
reproducible starting points. Every supported combination runs under its query-only oracle
in tests/test_adapter_contract.py (in bounds, counted, no gradients, recorded)."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pytest
from adapter_contract import BLACKBOX_ROWS, make_request, make_spec
from conftest import to_layout

from advharness.adapters.art.adapter import ArtAdapter
from advharness.adapters.art.blackbox import BLACKBOX_IMPLS
from advharness.adapters.base import AttackRequest
from advharness.config.catalogue import FRAMEWORKS
from advharness.config.spec import AttackSpec
from advharness.models.base import WrappedModel

ADAPTER = ArtAdapter()


def test_boundary_step_adaptation_inverted_and_threshold_scale(
    torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    req = make_request(torch_model, image_batch, make_spec("boundary"), rows=BLACKBOX_ROWS)
    with torch_model.with_access("decision-based"):
        out = ADAPTER.run(req)
    assert out.call.kwargs["step_adapt"] == pytest.approx(1 / 1.5)
    bad = AttackSpec(attack="boundary", steps=1, params={"step_adaptation": 0.5})
    with pytest.raises(ValueError, match="step_adaptation must be > 1"):
        ADAPTER.run(make_request(torch_model, image_batch, bad, rows=BLACKBOX_ROWS))
    spec = AttackSpec(attack="threshold", eps=0.1, steps=1).resolve()
    x = image_batch[0][:1]
    with torch_model.with_access("score-based"):
        out = ADAPTER.run(AttackRequest(torch_model, x, torch_model.predict(x), None, spec, 0))
    assert out.call.kwargs["th"] == 25 and out.call.kwargs["es"] == 1


def test_simba_estimator_is_softmax_of_the_counted_oracle(
    torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    from advharness.adapters.art.blackbox import _softmax_estimator

    x = image_batch[0][:2]
    with torch_model.with_access("score-based"):
        est = _softmax_estimator(torch_model)
        assert _softmax_estimator(torch_model) is est
        torch_model.counter.reset()
        p = est.predict(x)
        assert torch_model.counter.read().forward == 2
        assert next(iter(est.model.children())) is torch_model.counted
    logits = torch_model.predict_logits(x)
    want = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(p, want / want.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_every_blackbox_broken_entry_is_geoda() -> None:
    broken = {(a, fw) for a, impl in BLACKBOX_IMPLS.items() for fw in impl.broken}
    assert broken == {("geoda", "torch"), ("geoda", "tensorflow")}


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_geoda_broken_reason_is_still_true(
    fw: str, get_model: Callable[[str], WrappedModel], image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    """ART directly (no adapter): GeoDA.generate on numpy 2, and __init__ with a small max_iter."""
    from art.attacks.evasion import GeoDA

    model = get_model(fw)
    quoted = re.search(r"'(.+)'", BLACKBOX_IMPLS["geoda"].broken[fw])
    assert quoted is not None
    x = to_layout(image_batch[0][:1], model.layout)
    with model.with_access("decision-based"):
        est = ArtAdapter().model_form(model)
        attack = GeoDA(est, batch_size=1, norm=2, sub_dim=10, max_iter=600, verbose=False)
        with pytest.raises(AttributeError) as info:
            attack.generate(x)
        assert quoted.group(1) in str(info.value)
        with pytest.raises(IndexError):
            GeoDA(est, batch_size=1, norm=2, sub_dim=10, max_iter=10, verbose=False)
    assert model.violation is None


@pytest.mark.numerics
@pytest.mark.parametrize("attack", ["hsj", "boundary"])
def test_unseeded_random_state_is_made_reproducible(
    attack: str, torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    """ART seeds these attacks' start from OS entropy; through the adapter, same seed -> same
    output. Directly, the same NumPy seed still gives different starting points. The two runs
    share process, seed and kernels, so the outputs are bit-identical by construction."""
    from advharness.adapters.art.blackbox import seeded_random_state
    from advharness.core.seeding import seed_everything

    np.random.seed(0)
    a = np.random.RandomState().randint(2**31 - 1)
    np.random.seed(0)
    b = np.random.RandomState().randint(2**31 - 1)
    assert a != b  # what ART relies on: unseeded, not reproducible
    with seeded_random_state():
        np.random.seed(0)
        a = np.random.RandomState().randint(2**31 - 1)
        np.random.seed(0)
        b = np.random.RandomState().randint(2**31 - 1)
    assert a == b
    req = make_request(torch_model, image_batch, make_spec(attack, "l2"), rows=BLACKBOX_ROWS)
    outs = []
    ADAPTER.import_library("torch")  # as a cell does, before it seeds
    for _ in range(2):
        seed_everything(0)  # what the harness does before every cell
        with torch_model.with_access("decision-based"):
            out = ADAPTER.run(req)
        outs.append(out.x_adv)
    np.testing.assert_array_equal(outs[0], outs[1])
    assert any("unseeded np.random.RandomState()" in n for n in out.call.notes)


def test_library_imports_happen_before_the_cell_is_seeded() -> None:
    """Importing ART's evasion module draws from Python's ``random`` (ART 1.20.1): imported
    after seeding, it would make a process's first cell differ from the same cell later."""
    import subprocess
    import sys

    code = (
        "import random; random.seed(0); import art.attacks.evasion; "
        "print(random.random() != (random.seed(0) or random.random()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "True"  # the import consumed random numbers
    assert "art.attacks.evasion" in ADAPTER.MODULES["torch"]
