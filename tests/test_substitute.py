"""Substitute training (ART CopycatCNN): query accounting, cross-framework, labels only, determinism."""

from __future__ import annotations

import re
from typing import Any, cast

import numpy as np
import pytest

from advharness.adapters.art.adapter import ArtAdapter
from advharness.core.errors import HarnessError
from advharness.core.types import ThreatModel
from advharness.models.base import WrappedModel
from advharness.models.layout import to_layout
from advharness.zoo.data import Dataset, load_dataset
from advharness.zoo.recipes import load_recipe
from advharness.zoo.substitute import train_substitute

QUERIES = 800
EPOCHS = 10
#: Measured 0.86-0.92 over seeds 0-9 (chance 0.1); a broken label or layout path falls far below.
MIN_AGREEMENT = 0.8


@pytest.fixture(scope="module")
def pool() -> Dataset:
    return load_dataset("digits", "train")


@pytest.fixture(scope="module")
def digits_test() -> Dataset:
    return load_dataset("digits", "test")


@pytest.fixture(scope="module")
def targets() -> dict[str, WrappedModel]:
    return {fw: load_recipe("digits_cnn", fw) for fw in ("torch", "tensorflow")}


def _substitute(target: WrappedModel, pool: Dataset, framework: str, **kw: Any) -> WrappedModel:
    return train_substitute(
        target,
        pool.x,
        recipe="digits_cnn",
        framework=framework,
        queries=kw.pop("queries", QUERIES),
        epochs=kw.pop("epochs", EPOCHS),
        **kw,
    )


@pytest.mark.parametrize(
    ("target_fw", "framework"),
    [
        pytest.param("tensorflow", "torch", id="torch-substitute-of-tensorflow-target"),
        pytest.param("torch", "tensorflow", id="tensorflow-substitute-of-torch-target"),
    ],
)
def test_cross_framework_substitute(
    targets: dict[str, WrappedModel], pool: Dataset, digits_test: Dataset, target_fw: str, framework: str
) -> None:
    target = targets[target_fw]
    model = _substitute(target, pool, framework, eval_x=digits_test.x)
    info = model.substitute_info  # type: ignore[attr-defined]
    counts = target.counter.read()
    assert info["queries_spent"] == QUERIES
    assert (counts.forward, counts.backward) == (QUERIES, 0)
    assert info["access"] == "decision-based" and info["target_framework"] == target_fw
    assert info["art_class"] == "art.attacks.extraction.CopycatCNN"
    assert info["kwargs"] == {
        "batch_size_fit": 64,
        "batch_size_query": 64,
        "nb_epochs": EPOCHS,
        "nb_stolen": QUERIES,
        "use_probability": False,
    }
    assert info["thieved_estimator"]["layout_adapter"] is not None  # layouts differ
    assert model.framework == framework and model.family == "substitute:digits_cnn"
    assert model.name == f"substitute-digits_cnn-{framework}"
    assert info["agreement"] > MIN_AGREEMENT, info["agreement"]
    # The returned model is usable like any other, in its own layout; agreement is recomputable.
    x = to_layout(digits_test.x, model)
    agree = np.mean(model.predict(x) == target.predict(to_layout(digits_test.x, target)))
    assert agree == pytest.approx(info["agreement"])  # same predict, same process: exact
    if framework == "torch":
        assert not any(p.requires_grad for p in model.module.parameters())  # type: ignore[attr-defined]


@pytest.mark.parametrize("labels_only", [True, False], ids=["decision-based", "score-based"])
@pytest.mark.parametrize("target_fw", ["torch", "tensorflow"], ids=lambda fw: f"{fw}-target")
def test_victim_answers_match_access(
    targets: dict[str, WrappedModel],
    pool: Dataset,
    monkeypatch: pytest.MonkeyPatch,
    target_fw: str,
    labels_only: bool,
) -> None:
    """Decision-based: every answer CopycatCNN got from the victim is a one-hot row."""
    target = targets[target_fw]
    access: ThreatModel = "decision-based" if labels_only else "score-based"
    with target.with_access(access):
        victim = ArtAdapter().model_form(target)  # the cached form train_substitute uses
    answers: list[np.ndarray] = []
    predict = victim.predict

    def spy(*args: Any, **kwargs: Any) -> np.ndarray:
        out = predict(*args, **kwargs)
        answers.append(np.array(out))
        return cast(np.ndarray, out)

    monkeypatch.setattr(victim, "predict", spy)
    model = _substitute(target, pool, "torch", queries=200, epochs=1, labels_only=labels_only)
    info = model.substitute_info  # type: ignore[attr-defined]
    assert info["access"] == access and info["kwargs"]["use_probability"] is not labels_only
    assert (info["label_transform"] is None) is labels_only
    seen = np.concatenate(answers)
    assert seen.shape == (200, 10)
    one_hot = bool(np.isin(seen, (0.0, 1.0)).all() and (seen.sum(axis=1) == 1).all())
    assert one_hot is labels_only


@pytest.mark.numerics
@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_deterministic(
    targets: dict[str, WrappedModel], pool: Dataset, digits_test: Dataset, framework: str
) -> None:
    """Same seed, same process, same kernels: bit-identical by construction; another seed
    differs by far more than rounding. Marked ``numerics`` (both oneDNN settings)."""

    def logits(seed: int) -> np.ndarray:
        model = _substitute(targets["torch"], pool, framework, queries=300, epochs=3, seed=seed)
        return model.predict_logits(to_layout(digits_test.x, model))

    first = logits(0)
    np.testing.assert_array_equal(logits(0), first)
    assert not np.array_equal(logits(1), first)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"queries": 5000}, "queries (5000) exceed the attacker's pool"),
        ({"queries": 0}, "queries must be an integer >= 1"),
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"method": "jbda"}, "unknown substitute method 'jbda'"),
        ({"recipe": "resnet"}, "unknown recipe 'resnet'"),
        ({"framework": "jax"}, "unknown framework 'jax'"),
    ],
    ids=["queries-over-pool", "zero-queries", "zero-epochs", "method", "recipe", "framework"],
)
def test_bad_input(
    targets: dict[str, WrappedModel], pool: Dataset, kwargs: dict[str, Any], message: str
) -> None:
    target = targets["torch"]
    target.counter.reset()
    args: dict[str, Any] = {"recipe": "digits_cnn", "framework": "torch", "queries": 10, **kwargs}
    with pytest.raises(HarnessError, match=re.escape(message)) as e:
        train_substitute(target, pool.x, **args)
    assert "\n" not in str(e.value)
    assert target.counter.read().forward == 0  # refused before any query
