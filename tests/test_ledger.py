"""The ledger's bulk judging finds exactly what judging every answered row in float64 finds.

Exact by construction: the ledger's verdicts and the reference use the referee's own float64
``norm_of`` in one process; the ledger's float32 screen only picks candidates, with a margin."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from advharness.judging.ledger import BudgetExhausted, QueryLedger, SampleTrack
from advharness.judging.referee import BOX_ATOL, norm_of, within_eps


def reference_track(
    x0: np.ndarray,
    label: int,
    target: int | None,
    queries: list[np.ndarray],
    preds: list[np.ndarray],
    *,
    norm: str,
    eps: float | None,
    enforce: bool,
) -> SampleTrack:
    """Row by row, in float64, with the referee's rules: the definition the ledger must meet."""
    t, q = SampleTrack(), 0
    flat0 = x0.reshape(-1).astype(np.float64)
    for rows, pred in zip(queries, preds, strict=True):
        flat = rows.reshape(len(rows), x0.size).astype(np.float64)
        for row, p in zip(flat, pred, strict=True):
            q += 1
            if (p != target) if target is not None else (p == label):
                continue
            ok = bool(np.isfinite(row).all()) and not bool(((row < -BOX_ATOL) | (row > 1 + BOX_ATOL)).any())
            ok = ok and bool(np.ptp(flat0) == 0 or np.ptp(row) > 0)
            n = float(norm_of((np.where(np.isfinite(row), row, 0.0) - flat0)[None], norm)[0])
            if enforce and eps is not None:
                ok = ok and bool(within_eps(np.array([n]), eps)[0])
            if ok and n < t.best_norm:
                t.best_norm, t.best_x = n, row.astype(np.float32)
                t.improvements.append((q, n))
    t.queries = q
    return t


def random_queries(rng: np.random.Generator, x0: np.ndarray, n_queries: int) -> list[np.ndarray]:
    """Queries like an attack's: shrinking perturbations, some out of the box, NaN, constant."""
    out = []
    for k in range(n_queries):
        rows = int(rng.choice([1, 1, 2, 7, 40]))
        scale = 1.0 / (1 + k / 4)
        noise = scale * rng.normal(size=(rows, *x0.shape))
        if rng.random() < 0.5:  # sparse: a few coordinates (small L0)
            noise *= rng.random(noise.shape) < 0.2
        q = x0[None] + noise.astype(np.float32)
        q = np.clip(q, 0, 1) if rng.random() < 0.8 else q  # some leave the box
        if rng.random() < 0.05:
            q[0].flat[0] = np.nan
        if rng.random() < 0.05:
            q[-1] = 0.5  # degenerate
        if rng.random() < 0.1:
            q[0] = q[0] * 0 + x0 + 1e-7  # near-ties around the original
        out.append(q.astype(np.float32))
    return out


@pytest.mark.parametrize("norm", ["l0", "l1", "l2", "linf"])
@pytest.mark.parametrize("enforce", [False, True])
@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("buffer_bytes", [1, 16 << 20])  # 1: every query judged alone
def test_bulk_judging_equals_the_row_by_row_reference(
    norm: str, enforce: bool, targeted: bool, buffer_bytes: int
) -> None:
    rng = np.random.default_rng(zlib.crc32(f"{norm}-{enforce}-{targeted}".encode()))
    x = rng.random((3, 1, 6, 5)).astype(np.float32)
    x[2] = 0.25  # a constant image: constant adversarials are not degenerate for it
    y = np.array([1, 2, 3])
    targets = np.array([4, 5, 6]) if targeted else None
    eps = {"l0": 20.0, "l1": 8.0, "l2": 1.5, "linf": 0.6}[norm]
    led = QueryLedger(
        x=x,
        y=y,
        targets=targets,
        bounds=(0.0, 1.0),
        norm=norm,
        eps=eps,
        enforce_eps=enforce,
        budget=None,
        buffer_bytes=buffer_bytes,
    )
    for i in range(3):
        queries = random_queries(rng, x[i], 60)
        goal = targets[i] if targets is not None else 0
        preds = [np.where(rng.random(len(q)) < 0.6, goal, y[i]) for q in queries]
        led.begin(i)
        for q, p in zip(queries, preds, strict=True):
            logits = np.eye(10, dtype=np.float32)[p]
            np.testing.assert_array_equal(led.answer(q, logits), logits)
        led.end()
        want = reference_track(
            x[i],
            int(y[i]),
            None if targets is None else int(targets[i]),
            queries,
            preds,
            norm=norm,
            eps=eps,
            enforce=enforce,
        )
        got = led.tracks[i]
        assert got.queries == want.queries
        assert [q for q, _ in got.improvements] == [q for q, _ in want.improvements]
        np.testing.assert_array_equal([n for _, n in got.improvements], [n for _, n in want.improvements])
        if want.best_x is None:
            assert got.best_x is None
        else:
            assert got.best_x is not None and got.best_x.shape == x.shape[1:]
            np.testing.assert_array_equal(got.best_x.reshape(-1), want.best_x)
        assert len(want.improvements) > 0  # the random walk does find adversarials


def test_rows_are_copied_when_buffered() -> None:
    """Libraries reuse their query arrays; the ledger must keep what it was shown."""
    x = np.zeros((1, 4), np.float32)
    led = QueryLedger(
        x=x,
        y=np.array([0]),
        targets=None,
        bounds=(0.0, 1.0),
        norm="l2",
        eps=None,
        enforce_eps=False,
        budget=None,
    )
    q = np.full((1, 4), 0.5, np.float32)
    led.begin(0)
    led.answer(q, np.array([[0.0, 1.0]], np.float32))
    q[:] = 0.01  # the library overwrites its array; the ledger judged 0.5s
    led.end()
    assert led.tracks[0].best_norm == pytest.approx(1.0)


def test_budget_stop_judges_the_rows_that_fit_before_raising() -> None:
    x = np.zeros((1, 2), np.float32)
    led = QueryLedger(
        x=x,
        y=np.array([0]),
        targets=None,
        bounds=(0.0, 1.0),
        norm="linf",
        eps=None,
        enforce_eps=False,
        budget=2,
    )
    led.begin(0)
    with pytest.raises(BudgetExhausted):
        led.answer(
            np.array([[0.3, 0.0], [0.2, 0.0], [0.1, 0.0]], np.float32), np.array([[0.0, 1.0]] * 3, np.float32)
        )
    t = led.tracks[0]  # read while the sample is still active
    assert (t.queries, t.over_budget) == (2, 1)
    assert [q for q, _ in t.improvements] == [1, 2] and t.best_norm == pytest.approx(0.2)


@pytest.mark.parametrize("budget", [None, 5, 64, 65, 200])
@pytest.mark.parametrize("buffer_bytes", [1, 16 << 20])
def test_counts_and_budget_across_buffer_and_budget_edges(budget: int | None, buffer_bytes: int) -> None:
    """Query sizes around the buffer size (64 rows here) and the budget: counts, refusals,
    stop point and improvements equal the row-by-row reference cut at the budget."""
    rng = np.random.default_rng(7)
    x = rng.random((2, 3, 4)).astype(np.float32)
    led = QueryLedger(
        x=x,
        y=np.array([0, 1]),
        targets=None,
        bounds=(0.0, 1.0),
        norm="l2",
        eps=None,
        enforce_eps=False,
        budget=budget,
        buffer_bytes=buffer_bytes,
    )
    for i in range(2):
        sizes = [1, 63, 1, 64, 2, 70, 1, 0, 3]
        queries = [
            np.clip(x[i] + rng.normal(size=(s, 3, 4)).astype(np.float32) / (1 + j), 0, 1)
            for j, s in enumerate(sizes)
        ]
        preds = [np.where(rng.random(len(q)) < 0.5, 5, int(i)) for q in queries]
        led.begin(i)
        sent, stopped, refused = [], False, 0
        for q, p in zip(queries, preds, strict=True):
            try:
                out = led.answer(q, np.eye(10, dtype=np.float32)[p], True)
                np.testing.assert_array_equal(out, np.eye(10, dtype=np.float32)[p])
                sent.append((q, p))
            except BudgetExhausted:
                stopped = True
                fit = budget - sum(len(s) for s, _ in sent)  # type: ignore[operator]
                sent.append((q[:fit], p[:fit]))
                refused = len(q) - fit
                break
        led.end()
        want = reference_track(
            x[i], i, None, [q for q, _ in sent], [p for _, p in sent], norm="l2", eps=None, enforce=False
        )
        got = led.tracks[i]
        total = sum(sizes)
        assert got.queries == want.queries == (min(total, budget) if budget else total)
        assert got.improvements == want.improvements
        assert (i in led.stopped) == stopped == (budget is not None and budget < total)
        assert got.over_budget == refused and (refused > 0) == stopped


@pytest.mark.parametrize("budget", [None, 50])
@pytest.mark.parametrize("access", ["decision-based", "score-based"])
def test_torch_oracle_fills_the_buffer_and_judges_like_the_reference(budget: int | None, access: str) -> None:
    """The torch oracle's hot path writes the rows and their top-1 labels into the ledger's
    buffer itself: answers, counts, budget stop and improvements equal the reference's."""
    import torch

    from advharness.core.types import ThreatModel
    from advharness.models.torch_model import TorchModel

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(30, 10))
    model = TorchModel(net, input_shape=(1, 6, 5), nb_classes=10)
    rng = np.random.default_rng(3)
    x = rng.random((1, 1, 6, 5)).astype(np.float32)
    label = int(model.predict(x)[0])
    led = QueryLedger(
        x=x,
        y=np.array([label]),
        targets=None,
        bounds=(0.0, 1.0),
        norm="l2",
        eps=None,
        enforce_eps=False,
        budget=budget,
        buffer_bytes=2000,
    )
    queries = [q for q in random_queries(rng, x[0], 40) if np.isfinite(q).all()]
    sent: list[np.ndarray] = []
    preds: list[np.ndarray] = []
    acc: ThreatModel = access  # type: ignore[assignment]
    with model.with_access(acc), model.with_ledger(led):
        led.begin(0)
        for q in queries:
            xt = torch.from_numpy(q.copy())
            logits = net(xt).detach().numpy()
            try:
                out = model.counted(xt).numpy()
            except BudgetExhausted:
                assert budget is not None
                fit = budget - sum(len(s) for s in sent)
                sent.append(q[:fit])
                preds.append(logits[:fit].argmax(1))
                break
            want = np.eye(10, dtype=np.float32)[logits.argmax(1)] if access == "decision-based" else logits
            np.testing.assert_array_equal(out, want)
            xt.fill_(0.0)  # the library reuses its tensor: the ledger kept a copy
            sent.append(q)
            preds.append(logits.argmax(1))
        led.end()
    want_t = reference_track(x[0], label, None, sent, preds, norm="l2", eps=None, enforce=False)
    got = led.tracks[0]
    assert got.queries == want_t.queries == sum(len(s) for s in sent)
    assert (budget is not None) == (0 in led.stopped)
    assert got.improvements == want_t.improvements and len(got.improvements) > 0
    np.testing.assert_array_equal(got.best_x.reshape(-1), want_t.best_x)  # type: ignore[union-attr]
