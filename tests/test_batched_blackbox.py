"""Batched black-box cells: one library call per chunk of samples, every answered row
attributed to its sample by the ledger (see advharness.judging.batched)."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pytest
from conftest import errors_of, exp_dict, tiny_torch_model, to_layout

from advharness.adapters import ADAPTERS
from advharness.adapters.base import Adapter, AttackOutput, AttackRequest
from advharness.analytics.intervals import wilson_interval
from advharness.cells.cell import CellInputs, CellResult
from advharness.cells.dispatch import run_cell
from advharness.config.querymode import LOCKSTEP, PER_SAMPLE_BY_DEFAULT, POSITIONAL, default_query_mode
from advharness.config.spec import AttackSpec
from advharness.models.base import WrappedModel


# -- a model that knows the true owner of every row ------------------------------------------
class Truth:
    """Counts the rows a model receives per owner, independently of the harness's ledger.

    The owner of a row is known from the library call it arrives in (the adapter's request,
    recorded by :func:`watch_calls`, whose inputs are found among the originals by content):
    for a library that evaluates one row per input in input order (Foolbox) it is the input
    at the row's position, which is checked by the query's size; otherwise it is the input of
    the call nearest in L-inf, provably its owner here since every query lies within ``reach``
    of its own input and the inputs are more than ``2 * reach`` apart (checked too). CleverHans
    torch SPSA estimates its gradient at ``2 x +/- delta`` (``spsa.py``: ``loss_fn(pert)``
    evaluates ``x + pert`` and ``_compute_spsa_gradient`` passes it ``x + delta_x``), so a row
    within ``reach`` of twice an input is that input's too. Rows outside any call (the
    referee's) are one per sample, in order."""

    def __init__(self, origins: np.ndarray, positional: bool, reach: float) -> None:
        self.origins = origins.reshape(len(origins), -1).astype(np.float32)
        self.positional, self.reach = positional, reach
        self.seen = np.zeros(len(origins), np.int64)
        self.call: np.ndarray | None = None
        self.active = False  # not while the test builds the model
        d = np.abs(self.origins[:, None] - self.origins[None]).max(-1)
        np.fill_diagonal(d, np.inf)
        assert d.min() > 2 * reach  # the owner is provable

    def observe(self, rows: np.ndarray) -> None:
        if not self.active:
            return
        flat = rows.reshape(len(rows), -1)
        group = self.call if self.call is not None else np.arange(len(self.origins))
        if self.positional or self.call is None:
            assert len(flat) == len(group), (len(flat), group)
            np.add.at(self.seen, group, 1)
            return
        own = self.origins[group][None]
        d = np.minimum(np.abs(flat[:, None] - own).max(-1), np.abs(flat[:, None] - 2 * own).max(-1))
        assert np.all(np.sort(d, axis=1)[:, :1] <= self.reach), d
        if len(group) > 1:
            assert np.all(np.sort(d, axis=1)[:, 1] > 2 * self.reach), d
        np.add.at(self.seen, group[d.argmin(axis=1)], 1)

    def owners_of(self, x: np.ndarray) -> np.ndarray:
        flat = x.reshape(len(x), -1)
        return np.array([int(np.flatnonzero((self.origins == row).all(axis=1))[0]) for row in flat])


def watch_calls(monkeypatch: pytest.MonkeyPatch, truth: Truth) -> None:
    """Tell ``truth`` which inputs each adapter call attacks, for every library."""
    original = Adapter.run

    def run(self: Adapter, request: AttackRequest) -> AttackOutput:
        truth.call = truth.owners_of(request.x)
        try:
            return original(self, request)
        finally:
            truth.call = None

    for cls in ADAPTERS.values():
        monkeypatch.setattr(cls, "run", run)


def truth_model(framework: str, truth: Truth) -> WrappedModel:
    """The suite's tiny CNN, with ``truth`` observing every row it computes."""
    if framework == "torch":
        import torch

        from advharness.models.torch_model import TorchModel

        inner = tiny_torch_model().module

        class Net(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                truth.observe(x.detach().numpy())
                return cast(torch.Tensor, self.inner(x))

        return TorchModel(Net(), input_shape=(1, 28, 28), nb_classes=10)
    import keras
    import tensorflow as tf

    from advharness.models.tf_model import TFModel

    keras.utils.set_random_seed(0)
    conv = keras.layers.Conv2D(4, 5, strides=2, activation="relu")
    dense = keras.layers.Dense(10)

    def observe(t: tf.Tensor) -> np.float32:
        truth.observe(t.numpy())
        return np.float32(0.0)

    class KNet(keras.Model):
        def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
            zero = tf.py_function(observe, [x], tf.float32)  # also inside a library's tf.function
            return dense(tf.reshape(conv(x), (-1, 12 * 12 * 4))) + zero

    net = KNet()
    net(tf.zeros((1, 28, 28, 1)))
    return TFModel(net, input_shape=(28, 28, 1), nb_classes=10)


EXACT: dict[str, tuple[str, str, dict[str, Any]]] = {
    "art-square": ("art", "square", {"norm": "linf", "eps": 0.05, "steps": 40}),
    "cleverhans-spsa": (
        "cleverhans",
        "spsa",
        {"norm": "linf", "eps": 0.05, "steps": 3, "params": {"samples": 8, "delta": 0.01}},
    ),
    "foolbox-hsj": (
        "foolbox",
        "hsj",
        {"norm": "l2", "steps": 3, "params": {"max_evals": 20, "init_evals": 5}},
    ),
    "foolbox-boundary": ("foolbox", "boundary", {"norm": "l2", "steps": 30}),
}
CASES = [
    pytest.param(name, fw, id=f"{name}-{fw}")
    for name, fws in (
        ("art-square", ("torch", "tensorflow")),
        ("cleverhans-spsa", ("torch",)),
        ("foolbox-hsj", ("torch", "tensorflow")),
        ("foolbox-boundary", ("torch",)),
    )
    for fw in fws
]


@pytest.mark.parametrize(("name", "fw"), CASES)
@pytest.mark.parametrize("budget", [None, 25], ids=["no-budget", "budget-25"])
def test_batched_counts_match_the_true_owners(
    name: str,
    fw: str,
    budget: int | None,
    monkeypatch: pytest.MonkeyPatch,
    image_batch: tuple[np.ndarray, np.ndarray],
) -> None:
    n = 4
    lib, attack, args = EXACT[name]
    x_nchw = image_batch[0][:n]
    layout = "NCHW" if fw == "torch" else "NHWC"
    x = to_layout(x_nchw, layout)
    # score-based queries stay within eps (+ SPSA's delta) of their input
    truth = Truth(x, positional=(lib, attack) in POSITIONAL, reach=0.1)
    model = truth_model(fw, truth)
    pred = model.predict(x)
    truth.active = True
    watch_calls(monkeypatch, truth)
    spec = AttackSpec(attack=attack, budget=budget, query_mode="batched", **args).resolve()
    # batch_size 2: two library calls of two samples each; ART and CleverHans re-batch inside
    res = run_cell(CellInputs(model, x, pred, pred, None), spec, lib, seed=0, batch_size=2)
    assert res.summary["status"] == "ok", res.summary.get("reason")
    assert res.summary["query_mode"] == "batched"
    assert "query_mode batched" in res.summary["library_call"]
    r = res.records
    assert r is not None
    queries, refused = r["queries"].to_numpy(), r["queries_refused"].to_numpy()
    assert res.summary["queries_ambiguous"] == 0
    assert queries.min() > 4
    assert (refused.sum() > 0) == (budget is not None)
    if budget is not None:
        assert queries.max() <= budget
    # The model computed every row sent (past-budget and refused rows too), plus one referee
    # row per sample.
    np.testing.assert_array_equal(truth.seen, queries + refused + 1)


# -- the statistics do not depend on the mode ------------------------------------------------
def _run(model: WrappedModel, x: np.ndarray, spec: AttackSpec, lib: str, bs: int) -> CellResult:
    pred = model.predict(x)
    return run_cell(CellInputs(model, x, pred, pred, None), spec.resolve(), lib, seed=0, batch_size=bs)


def test_batched_and_per_sample_agree_at_every_query_level(
    torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    levels = (10, 30, 100, 300)
    rates = {}
    for mode in ("per-sample", "batched"):
        spec = AttackSpec(
            attack="square", eps=0.05, steps=300, budget=300, query_levels=levels, query_mode=mode
        )
        res = _run(torch_model, image_batch[0], spec, "art", bs=16)
        assert res.summary["status"] == "ok", res.summary.get("reason")
        rates[mode] = np.array([res.summary[f"success_at_q{q}"] for q in levels])
        n = int(res.summary["n_correct"])
    assert 0 < rates["per-sample"][-1] < 1  # a level where success is not trivially 0 or 1
    low, high = wilson_interval(np.round(rates["per-sample"] * n), n)
    assert np.all((low <= rates["batched"]) & (rates["batched"] <= high)), (rates, low, high)


# -- ambiguous rows ----------------------------------------------------------------------------
def test_identical_inputs_give_ambiguous_rows_counted_for_both_and_never_used(
    torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    x = image_batch[0][[0, 0, 1]]  # samples 0 and 1 are the same image
    out = {}
    for mode in ("per-sample", "batched"):
        spec = AttackSpec(attack="square", eps=0.2, steps=100, budget=60, query_mode=mode)
        res = _run(torch_model, x, spec, "art", bs=8)
        assert res.summary["status"] == "ok", res.summary.get("reason")
        assert res.records is not None
        out[mode] = (res.summary, res.records)
    summary, r = out["per-sample"]
    assert r["success"][:2].all()  # the attack fools the image within the budget...
    summary, r = out["batched"]
    q, amb = r["queries"].to_numpy(), r["queries_ambiguous"].to_numpy()
    # ...but batched, every row near the twins is ambiguous: charged to both, never judged
    assert summary["queries_ambiguous"] > 0 and "ambiguous" in summary["library_call"]
    np.testing.assert_array_equal(amb[:2], q[:2])
    assert q[0] == q[1] > 0 and amb[2] == 0 and q[2] > 0
    assert not r["success"][:2].any() and r["first_success_query"][:2].isna().all()


# -- the mode itself -----------------------------------------------------------------------------
def test_query_mode_defaults_follow_the_registry_and_keep_per_sample_keys() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="query_mode applies to score-based"):
        AttackSpec(attack="pgd", eps=0.1, query_mode="batched")
    square = AttackSpec(attack="square", eps=0.1).resolve()
    assert square.query_mode is None
    assert square.for_library("art").query_mode == "batched" == default_query_mode("art", "square")
    hsj = AttackSpec(attack="hsj").resolve()
    assert hsj.for_library("art").query_mode == "per-sample"
    assert hsj.for_library("foolbox").query_mode == "batched"
    # per-sample cells keep the content of their key (stored results are found again); a
    # batched cell is a different cell
    legacy = AttackSpec(attack="square", eps=0.1).resolve().to_dict()
    assert AttackSpec(attack="square", eps=0.1, query_mode="per-sample").resolve().to_dict() == legacy
    assert square.for_library("art").to_dict() == {**legacy, "query_mode": "batched"}
    assert AttackSpec(attack="pgd", eps=0.1).resolve().for_library("art").columns()["query_mode"] == ""


def test_registries_name_supported_blackbox_pairs() -> None:
    from advharness.adapters import get_adapter

    for lib, attack in [*PER_SAMPLE_BY_DEFAULT, *POSITIONAL]:
        impl = get_adapter(lib).IMPLS.get(attack)
        assert impl is not None, (lib, attack)
    assert not set(PER_SAMPLE_BY_DEFAULT) & set(POSITIONAL)


def test_query_mode_errors_name_the_field_and_the_fix() -> None:
    assert errors_of(exp_dict(attacks=[{"attack": "fgsm", "eps": 0.1, "query_mode": "batched"}])) == [
        "attacks[0]: query_mode applies to score-based and decision-based cells; this cell is "
        "white-box (set threat_model, or drop query_mode)"
    ]
    assert errors_of(exp_dict(attacks=[{"attack": "square", "eps": 0.1, "query_mode": "batch"}])) == [
        "attacks[0].query_mode: Input should be 'batched' or 'per-sample'"
    ]


@pytest.mark.parametrize("mode", ["batched", "per-sample"])
def test_a_lockstep_attack_says_so_when_batched(
    mode: str, torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    assert set(LOCKSTEP) <= set(POSITIONAL)
    spec = AttackSpec.model_validate(
        {
            "attack": "hsj",
            "norm": "l2",
            "steps": 2,
            "params": {"max_evals": 20, "init_evals": 5},
            "budget": 50,
            "query_mode": mode,
        }
    )
    res = _run(torch_model, image_batch[0][:4], spec, "foolbox", bs=4)
    assert res.summary["status"] == "ok" and res.summary["query_mode"] == mode
    # its query counts measure the library's lockstep batching, and the row says so
    assert (LOCKSTEP[("foolbox", "hsj")] in res.summary["library_call"]) == (mode == "batched")
