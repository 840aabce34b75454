"""The batched ledger on hand-checked numbers: attribution, budgets, ambiguous rows."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import to_layout

from advharness.judging.attribution import SEP_MARGIN
from advharness.judging.batched import BatchedLedger
from advharness.judging.ledger import BudgetExhausted
from advharness.models.base import WrappedModel


def _ledger(
    budget: int | None,
    attribution: str = "distance",
    x: list[list[float]] | None = None,
    y: list[int] | None = None,
) -> BatchedLedger:
    """'Images' [0, 0] and [1, 1] (labels 0 and 1) unless given; the model says class 1 iff
    the first feature > 0.5."""
    return BatchedLedger(
        x=np.array(x or [[0.0, 0.0], [1.0, 1.0]], np.float32),
        y=np.array(y or [0, 1]),
        targets=None,
        bounds=(0.0, 1.0),
        norm="l2",
        eps=None,
        enforce_eps=False,
        budget=budget,
        attribution="position" if attribution == "position" else "distance",
    )


def _ask(led: BatchedLedger, rows: list[list[float]]) -> np.ndarray:
    q = np.array(rows, np.float32)
    p = (q[:, 0] > 0.5).astype(np.float32)
    return led.answer(q, np.stack([1 - p, p], axis=1))


def test_rows_past_a_budget_are_answered_but_never_counted_nor_judged() -> None:
    led = _ledger(3)
    led.begin_group(np.array([0, 1]))
    _ask(led, [[0.1, 0.0], [0.9, 1.0]])  # one query each
    # sample 0: [0.6, 0] is its first success (query 2); [0.55, 0] would beat it, but it is
    # sample 0's 4th row: answered truthfully, not counted, not judged
    out = _ask(led, [[0.6, 0.0], [0.2, 0.1], [0.55, 0.0]])
    np.testing.assert_array_equal(out.argmax(1), [1, 0, 1])
    # equidistant from both: ambiguous; sample 0 has spent its budget, sample 1 is charged
    _ask(led, [[0.5, 0.5]])
    _ask(led, [[0.9, 0.9]])  # sample 1's third query: every sample has spent its budget
    assert not led.exhausted()
    with pytest.raises(BudgetExhausted):
        _ask(led, [[0.9, 0.9], [0.1, 0.1]])
    assert led.exhausted()
    led.end()
    cols = led.columns((1, 2, 3))
    np.testing.assert_array_equal(cols["queries"], [3, 3])
    np.testing.assert_array_equal(cols["queries_refused"], [1 + 1 + 1, 1])
    np.testing.assert_array_equal(cols["queries_ambiguous"], [0, 1])
    np.testing.assert_array_equal(cols["stopped_at_budget"], [True, True])
    assert cols["first_success_query"][0] == 2 and np.isnan(cols["first_success_query"][1])
    np.testing.assert_allclose(led.best_within_budget()[0], [0.6, 0.0])
    assert led.tracks[0].best_norm == pytest.approx(0.6)
    assert led.by == {"position": 0, "chunk": 2, "search": 6, "ambiguous": 1}


def test_a_fixed_budget_call_stops_once_every_sample_has_won_or_spent_its_budget() -> None:
    led = BatchedLedger(
        x=np.array([[0.0, 0.0], [1.0, 1.0]], np.float32), y=np.array([0, 1]), targets=None,
        bounds=(0.0, 1.0), norm="l2", eps=0.7, enforce_eps=True, budget=5,
    )  # fmt: skip
    led.begin_group(np.array([0, 1]))
    _ask(led, [[0.6, 0.0], [0.9, 0.9]])  # sample 0 wins at its first query
    answered = 1
    with pytest.raises(BudgetExhausted):
        for _ in range(100):  # sample 1 spends its budget; sample 0 has nothing left to gain
            _ask(led, [[0.9, 1.0]])
            answered += 1
    assert 5 <= answered <= 5 + 16  # who has won is judged at most 16 queries after the fact
    led.end()
    cols = led.columns(())
    np.testing.assert_array_equal(cols["queries"], [1, 5])
    np.testing.assert_array_equal(cols["queries_refused"], [0, answered - 5 + 1])
    np.testing.assert_array_equal(cols["stopped_at_budget"], [False, True])
    assert cols["first_success_query"][0] == 1


def test_ambiguous_and_non_finite_rows_are_charged_to_every_candidate_and_never_used() -> None:
    led = _ledger(None, x=[[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]], y=[0, 0, 1])  # 0 and 1 are twins
    led.begin_group(np.array([0, 1, 2]))
    _ask(led, [[0.9, 0.0], [0.6, 0.0]])  # adversarial for the twins, equally near both: ambiguous
    _ask(led, [[np.nan, 0.0]])  # no distance: any sample of the call
    _ask(led, [[0.2, 0.9]])  # nearest [1, 1] alone: sample 2's, and adversarial for it
    led.end()
    cols = led.columns((10,))
    np.testing.assert_array_equal(cols["queries"], [3, 3, 2])
    np.testing.assert_array_equal(cols["queries_ambiguous"], [3, 3, 1])
    assert np.isnan(cols["first_success_query"][:2]).all() and cols["first_success_query"][2] == 2
    np.testing.assert_array_equal(led.best_within_budget()[:2], led.x[:2])
    assert led.by["ambiguous"] == 3 and led.by["search"] == 1


def test_position_attributes_far_rows_exactly_and_refuses_other_query_sizes() -> None:
    led = _ledger(None, attribution="position")
    led.begin_group(np.array([0, 1]))
    _ask(led, [[1.0, 1.0], [0.0, 0.0]])  # each nearer the other sample: still row k -> sample k
    with pytest.raises(RuntimeError, match="does not hold"):
        _ask(led, [[0.0, 0.0]])
    led.end()
    cols = led.columns((1,))
    np.testing.assert_array_equal(cols["queries"], [1, 1])
    assert cols["first_success_query"][0] == 1  # [1, 1] is class 1: sample 0's success
    assert cols["first_success_query"][1] == 1  # [0, 0] is class 0: sample 1's
    assert led.by["position"] == 2


@pytest.mark.parametrize("norm", ["l2", "linf", "l1", "l0"])
@pytest.mark.parametrize("reach", [0.0, 0.3])
def test_the_chunk_rule_and_the_search_equal_nearest_original_attribution(norm: str, reach: float) -> None:
    """Counts per sample equal a brute-force nearest-original count (ties within the margin:
    every candidate), whichever rule attributed each row."""
    rng = np.random.default_rng(0)
    m, d = 7, 12
    x = rng.random((m, d)).astype(np.float32)
    x[5] = x[4]  # twins: rows near them are ambiguous
    led = BatchedLedger(
        x=x, y=np.zeros(m, np.int64), targets=None, bounds=(0.0, 1.0), norm=norm,
        eps=None, enforce_eps=False, budget=None,
        reach=reach,
    )  # fmt: skip
    led.begin_group(np.arange(m))
    want, amb = np.zeros(m, np.int64), np.zeros(m, np.int64)
    for k in range(30):
        owners = rng.permutation(m)[: rng.integers(1, m + 1)] if k % 3 else np.arange(m)
        rows = x[owners] + rng.normal(scale=[0.01, 0.2, 1.0][k % 3], size=(len(owners), d)).astype(np.float32)
        if norm == "l0":
            rows = np.where(rng.random(rows.shape) < 0.3, rows, x[owners])
        led.answer(rows, np.zeros((len(rows), 2), np.float32))
        diff = rows.astype(np.float64)[:, None] - x.astype(np.float64)[None]
        dist = {
            "l2": np.sqrt((diff**2).sum(-1)),
            "linf": np.abs(diff).max(-1),
            "l1": np.abs(diff).sum(-1),
            "l0": (diff != 0).sum(-1).astype(np.float64),
        }[norm]
        d1 = dist.min(axis=1, keepdims=True)
        cand = dist <= np.maximum(d1 * (1 + SEP_MARGIN) + SEP_MARGIN * 1e-3, reach)
        alone = cand.sum(axis=1) == 1
        want += cand.sum(axis=0)
        amb += cand[~alone].sum(axis=0)
    led.end()
    cols = led.columns((1,))
    np.testing.assert_array_equal(cols["queries"], want)
    np.testing.assert_array_equal(cols["queries_ambiguous"], amb)
    assert led.by["chunk"] > 0 and led.by["search"] > 0 and led.by["ambiguous"] > 0


def test_tf_graph_oracle_stops_a_batched_call_at_the_budget(
    tf_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    """Inside a compiled graph the oracle's BudgetExhausted comes back as a TF error; the
    ledger says it was the budget (as the batched runner asks)."""
    import tensorflow as tf

    from advharness.cells.cell import CellInputs, make_ledger
    from advharness.config.spec import AttackSpec

    x = to_layout(image_batch[0][:4], tf_model.layout)
    y = tf_model.predict(x)
    spec = AttackSpec(attack="square", eps=0.1, budget=1, query_mode="batched").resolve()
    ledger = make_ledger(CellInputs(tf_model, x, y, y, None), spec, "art")
    assert isinstance(ledger, BatchedLedger)
    with tf_model.with_access("score-based"), tf_model.with_ledger(ledger):
        graph = tf.function(lambda t: tf_model.counted(t))
        ledger.begin_group(np.arange(4))
        graph(tf_model.to_tensor(x))  # one query each: every budget spent
        with pytest.raises(tf.errors.OpError):
            graph(tf_model.to_tensor(x))
        assert ledger.exhausted()
        ledger.end()
    np.testing.assert_array_equal(ledger.columns(())["queries"], [1, 1, 1, 1])
    np.testing.assert_array_equal(ledger.columns(())["queries_refused"], [1, 1, 1, 1])
