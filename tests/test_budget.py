"""Per-sample query accounting and budgets for black-box cells (the oracle's ledger)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np
import pytest
from adapter_contract import Case, cases, make_spec, params
from conftest import to_layout

from advharness.cells.cell import CellInputs
from advharness.cells.dispatch import run_cell
from advharness.config.catalogue import CATALOGUE, FRAMEWORKS
from advharness.config.spec import AttackSpec
from advharness.judging.ledger import BudgetExhausted, QueryLedger
from advharness.models.base import WrappedModel
from advharness.models.layout import from_nchw

BUDGET = 30
N = 3
#: Enough work per sample that every attack would exceed BUDGET queries if not stopped.
LONG: dict[str, dict[str, Any]] = {
    "square": {"steps": 200},
    "spsa": {"steps": 5, "params": {"samples": 8}},
    "zoo": {"steps": 20, "params": {"coordinates": 8}},
    "simba": {"steps": 200},
    "pixel": {"steps": 5},
    "threshold": {"steps": 5},
    "boundary": {"steps": 200},
    "hsj": {"steps": 20, "params": {"max_evals": 40, "init_evals": 10}},
    "signopt": {"steps": 20, "library_options": {"art": {"num_trial": 10, "query_limit": 300}}},
    "gaussian_blur": {"steps": 200},
    "salt_and_pepper": {"steps": 200},
    "contrast": {"steps": 200},
    "blended_noise": {"steps": 200},
    "noise": {"params": {"draws": 100}},
}
BLACKBOX = [a for a, d in CATALOGUE.items() if d.threat_model != "white-box"]


def _inputs(
    model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray], n: int, targeted: bool
) -> CellInputs:
    """The first ``n`` images, labelled with the model's own predictions (all attacked)."""
    x = to_layout(image_batch[0][:n], model.layout)
    pred = model.predict(x)
    targets = (pred + 1) % model.nb_classes if targeted else None
    return CellInputs(model, x, pred, pred, targets)


def test_every_blackbox_attack_has_a_budget_case() -> None:
    assert set(LONG) == set(BLACKBOX) - {"geoda"}  # GeoDA: broken in every framework


@pytest.mark.parametrize("mode", ["per-sample", "batched"])
@pytest.mark.parametrize("case", params(cases(whitebox=False)))
def test_budget_is_never_exceeded(
    case: Case,
    mode: str,
    get_model: Callable[[str], WrappedModel],
    image_batch: tuple[np.ndarray, np.ndarray],
) -> None:
    np.random.seed(0)
    model = get_model(case.framework)
    spec = make_spec(
        case.attack, case.norm, case.targeted, settings=LONG, budget=BUDGET, query_mode=mode
    ).resolve()
    inputs = _inputs(model, image_batch, N, case.targeted)
    # batched: one library call on all N samples (batch_size 8), its rows attributed by the ledger
    res = run_cell(inputs, spec, case.library, seed=0, batch_size=8)
    assert res.summary["status"] == "ok", res.summary.get("reason")
    assert res.summary["query_mode"] == mode
    r = res.records
    assert r is not None
    queries, refused = r["queries"].to_numpy(), r["queries_refused"].to_numpy()
    assert queries.max() <= BUDGET
    # Every row the libraries sent was either answered (and counted) or refused at the budget
    # (batched: or answered past its sample's budget, neither counted nor judged); an
    # ambiguous row (batched: e.g. a blend halfway between two inputs) counts for each candidate.
    rows = res.summary["forward_per_sample"] * N
    if res.summary["queries_ambiguous"] == 0:
        assert rows == queries.sum() + refused.sum()
    else:
        assert mode == "batched" and rows < queries.sum() + refused.sum()
    assert res.summary["backward_per_sample"] == 0
    stopped = r["stopped_at_budget"].to_numpy()
    assert np.all(queries[stopped] == BUDGET) and np.all(refused[stopped] > 0)
    # The budget binds (these settings need more than BUDGET queries) unless the attack won early.
    assert stopped.any() or r["success"].all()
    # A success is the best point the oracle answered within the budget.
    first = r.loc[r["success"], "first_success_query"].to_numpy()
    assert np.all(first <= BUDGET)
    assert res.summary["n_stopped_at_budget"] == int(stopped.sum())


# -- exact per-sample counts against a model that attributes rows itself ----------------------
class Attributing:
    """Models that attribute every row they see to the nearest of the cell's inputs (L-inf),
    independently of the harness: exact while queries stay in a small ball around their sample
    and the inputs are far apart (MNIST images: L-inf distance ~1; eps here 0.05)."""

    @staticmethod
    def torch(origins: np.ndarray) -> tuple[WrappedModel, np.ndarray]:
        import torch

        from advharness.models.torch_model import TorchModel

        seen = np.zeros(len(origins), np.int64)
        flat = torch.from_numpy(origins.reshape(len(origins), -1))
        torch.manual_seed(0)
        lin = torch.nn.Linear(28 * 28, 10)

        class Net(torch.nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                d = (x.detach().flatten(1)[:, None, :] - flat[None]).abs().amax(-1)
                np.add.at(seen, d.argmin(1).numpy(), 1)
                return cast(torch.Tensor, lin(x.flatten(1)))

        return TorchModel(Net(), input_shape=(1, 28, 28), nb_classes=10), seen

    @staticmethod
    def tensorflow(origins: np.ndarray) -> tuple[WrappedModel, np.ndarray]:
        import keras
        import tensorflow as tf

        from advharness.models.tf_model import TFModel

        seen = np.zeros(len(origins), np.int64)
        flat = from_nchw(origins, "NHWC").reshape(len(origins), -1)
        keras.utils.set_random_seed(0)
        dense = keras.layers.Dense(10)

        def attribute(t: tf.Tensor) -> np.float32:
            rows = t.numpy().reshape(len(t), -1)
            np.add.at(seen, np.abs(rows[:, None, :] - flat[None]).max(-1).argmin(1), 1)
            return np.float32(0.0)

        class Net(keras.Model):
            def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
                # counted in Python, also when a library calls the model inside tf.function
                zero = tf.py_function(attribute, [x], tf.float32)
                return dense(tf.reshape(x, (-1, 28 * 28))) + zero

        net = Net()
        net(tf.zeros((1, 28, 28, 1)))
        seen[:] = 0
        return TFModel(net, input_shape=(28, 28, 1), nb_classes=10), seen


EXACT = [
    pytest.param(lib, attack, fw, id=f"{lib}-{attack}-{fw}")
    for lib, attack, fws in (("art", "square", FRAMEWORKS), ("cleverhans", "spsa", ("torch",)))
    for fw in fws
]


@pytest.mark.parametrize(("lib", "attack", "fw"), EXACT)
@pytest.mark.parametrize("budget", [None, 25], ids=["no-budget", "budget-25"])
def test_counts_match_a_model_that_attributes_rows_itself(
    lib: str, attack: str, fw: str, budget: int | None, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    n = 4
    model, seen = getattr(Attributing, fw)(image_batch[0][:n])
    inputs = _inputs(model, image_batch, n, targeted=False)
    seen[:] = 0
    # batch_size 2 < queries per step (SPSA: 2 * 8 mirrored rows): the libraries re-batch.
    args: dict[str, dict[str, Any]] = {
        "square": {"steps": 40},
        "spsa": {"steps": 3, "params": {"samples": 8}},
    }
    spec = AttackSpec(
        attack=attack,
        norm="linf",
        eps=0.05,
        budget=budget,
        **args[attack],
    ).resolve()
    res = run_cell(inputs, spec, lib, seed=0, batch_size=2)
    assert res.summary["status"] == "ok", res.summary.get("reason")
    assert res.records is not None
    queries = res.records["queries"].to_numpy()
    refused = res.records["queries_refused"].to_numpy()
    assert queries.sum() > 4 * n
    assert (refused.sum() > 0) == (budget is not None)
    # The model computed every row sent (refused ones too: the oracle must see them to know;
    # their answers never reach the library), plus one referee row per sample.
    np.testing.assert_array_equal(seen, queries + refused + 1)


# -- the ledger itself, on hand-checked numbers ---------------------------------------------
def _ledger(budget: int | None, *, eps: float | None = None, enforce: bool = False) -> QueryLedger:
    """Two 1-D 'images' [0, 0] and [1, 1]; the model says class 1 iff the first feature > 0.5."""
    x = np.array([[0.0, 0.0], [1.0, 1.0]], np.float32)

    return QueryLedger(
        x=x,
        y=np.array([0, 1]),
        targets=None,
        bounds=(0.0, 1.0),
        norm="l2",
        eps=eps,
        enforce_eps=enforce,
        budget=budget,
    )


def _model(rows: np.ndarray) -> np.ndarray:
    """The test ledger's model: class 1 iff the first feature > 0.5 (its logits)."""
    p = (rows[:, 0] > 0.5).astype(np.float32)
    return np.stack([1 - p, p], axis=1)


def _ask(led: QueryLedger, rows: list[list[float]]) -> np.ndarray:
    q = np.array(rows, np.float32)
    return led.answer(q, _model(q))


def test_ledger_tracks_first_success_best_norm_and_levels() -> None:
    led = _ledger(None, eps=0.7)
    led.begin(0)
    out = _ask(led, [[0.2, 0.0], [0.9, 0.9], [0.6, 0.0], [2.0, 0.0]])
    np.testing.assert_array_equal(out.argmax(1), [0, 1, 1, 1])
    _ask(led, [[0.55, 0.0]])
    led.end()
    t = led.tracks[0]
    assert t.queries == 5 and t.over_budget == 0
    # Query 2 is the first success (norm 1.27); query 3 improves it (0.6); query 4 is out of
    # the box (not valid); query 5 improves again (0.55).
    assert [q for q, _ in t.improvements] == [2, 3, 5]
    assert t.first_success() == 2
    assert t.norm_at(1) == np.inf and t.norm_at(2) == pytest.approx(np.hypot(0.9, 0.9))
    assert t.norm_at(4) == pytest.approx(0.6) and t.norm_at(100) == pytest.approx(0.55)
    np.testing.assert_allclose(led.best_within_budget()[0], [0.55, 0.0])
    np.testing.assert_array_equal(led.best_within_budget()[1], [1.0, 1.0])  # never attacked
    cols = led.columns((2, 4))
    np.testing.assert_array_equal(cols["queries"], [5, 0])
    assert cols["first_success_query"][0] == 2 and np.isnan(cols["first_success_query"][1])
    assert "first_success_query_at_eps" not in cols


def test_ledger_enforces_the_budget_and_the_eps_ball() -> None:
    led = _ledger(3, eps=0.7, enforce=True)
    led.begin(0)
    _ask(led, [[0.9, 0.0], [0.1, 0.0]])  # 0.9 > eps: not a success
    with pytest.raises(BudgetExhausted):
        _ask(led, [[0.6, 0.0], [0.65, 0.0]])  # only the first fits
    assert led.exhausted()
    t = led.tracks[0]
    assert (t.queries, t.over_budget) == (3, 1)
    assert t.first_success() == 3 and t.best_norm == pytest.approx(0.6)
    with pytest.raises(BudgetExhausted):
        _ask(led, [[0.6, 0.0]])
    led.end()
    with pytest.raises(RuntimeError, match="no sample was active"):
        _ask(led, [[0.0, 0.0]])


def test_budget_is_refused_on_white_box_cells() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="budget applies to score-based"):
        AttackSpec(attack="pgd", eps=0.1, budget=100)
    spec = AttackSpec(attack="pgd", eps=0.1, budget=100, threat_model="score-based").resolve()
    assert spec.budget == 100 and "budget=100" in spec.label
    with pytest.raises(ValidationError, match="query_levels"):
        AttackSpec(attack="square", eps=0.1, query_levels=(0,))


def test_head_to_head_has_query_budget_and_violation_columns(
    torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    from advharness.execution.api import run_attacks
    from advharness.reporting.render import render_text

    x = image_batch[0][:3]
    y = torch_model.predict(x)
    res = run_attacks(
        [torch_model],
        x,
        y,
        [
            {"attack": "square", "eps": 0.1, "steps": 100, "budget": 20, "query_levels": [5, 20]},
            {"attack": "fgsm", "eps": 0.1, "threat_model": "score-based"},
        ],
        ["art"],
    )
    table = res.table()
    square = table.xs("square", level="attack").iloc[0]
    assert square[("art", "torch", "budget")] == 20
    assert square[("art", "torch", "queries_median")] <= 20
    fgsm = table.xs("fgsm", level="attack").iloc[0]
    assert "threat-model violation" in fgsm[("art", "torch", "violation")]
    row = res.summary.iloc[0]
    assert {"success_at_q5", "success_at_q20", "queries_mean", "queries_max"} <= set(row.index)
    assert row["success_at_q5"] <= row["success_at_q20"] <= row["success_rate"] + 1e-9
    text = render_text(res.summary)
    assert "<=20" in text and "VIOLATION" in text
