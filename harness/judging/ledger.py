"""Per-sample query accounting for black-box cells: exact counts, budgets, best-in-budget.

A per-sample black-box cell calls the library once per sample (see :mod:`advharness.cells.blackbox`),
so every row a query-only oracle receives while sample ``i`` is active belongs to sample ``i``:
the count is exact however the library re-batches, subsets or duplicates inputs internally (a
batched cell's ledger, :mod:`advharness.judging.batched`, attributes each row instead). The oracles
(:mod:`advharness.models.torch_model`, :mod:`advharness.models.tf_model`) hand every query to
:meth:`QueryLedger.answer`, which

* counts the rows against the active sample;
* answers truthfully (the model's logits, or one-hot top-1 labels for a decision-based
  oracle) while the sample is within its ``budget``. A query
  that does not fit in what is left stops the library for that sample: the rows that still
  fit are evaluated (and count), then :class:`BudgetExhausted` is raised and the harness
  keeps the best result reached within the budget. (Answering past the budget with anything,
  e.g. the clean input's answer, contradicts earlier answers, and searches such as
  HopSkipJump's step-size halving then never end.)
* judges every truthfully answered row with the referee's rules (goal reached, finite, inside
  the box, not degenerate, inside the eps-ball for fixed-budget attacks) and keeps the best
  (smallest-norm) adversarial row and the query index at which each improvement happened,
  which gives success and norms at any query level without extra forward passes. Rows are
  buffered and judged in bulk (see :class:`QueryLedger`), so a query costs a copy of its rows
  and top-1 labels into the buffer; an oracle may write them there itself through its
  framework's view of the buffer (:meth:`QueryLedger.reserve`), which saves conversions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from advharness.judging.referee import BOX_ATOL, EPS_ATOL, EPS_RTOL, input_scale, norm_of, within_eps


class BudgetExhausted(RuntimeError):
    """The active sample has used its query budget: the oracle stops the attack on it."""


@dataclass
class SampleTrack:
    """What the oracle saw of one sample."""

    queries: int = 0  # rows evaluated within the budget (never more than the budget)
    over_budget: int = 0  # rows refused past the budget (the library was stopped there)
    best_x: np.ndarray | None = None  # smallest-norm valid adversarial row seen in budget
    best_norm: float = float("inf")
    #: (query index, norm) each time the best norm improved; the first is the first success.
    improvements: list[tuple[int, float]] = field(default_factory=list)

    def first_success(self) -> float:
        """1-based index of the first query that was a valid adversarial."""
        return float(self.improvements[0][0]) if self.improvements else float("nan")

    def norm_at(self, level: int) -> float:
        """Best norm found within the first ``level`` queries (inf if none)."""
        best = float("inf")
        for q, n in self.improvements:
            if q > level:
                break
            best = n
        return best


class QueryLedger:
    """Per-sample counts, budget and best adversarial for one black-box cell.

    ``x``: the cell's inputs in the model's layout, ``y`` labels, ``targets`` target classes
    (targeted cells) or None.

    The hot path (:meth:`answer`, or :meth:`reserve` for an oracle that writes the buffer
    itself) only counts, checks the budget and copies the answered rows and their predicted
    labels into a buffer; the buffer is judged in bulk when it fills, when the sample ends
    and before any result is read. Judging in bulk screens the goal-reaching rows by a
    float32 norm with a safety margin and decides only the possible improvements with the
    referee's float64 rules, so it finds exactly what judging every row in float64 would
    find.
    """

    def __init__(
        self,
        *,
        x: np.ndarray,
        y: np.ndarray,
        targets: np.ndarray | None,
        bounds: tuple[float, float],
        norm: str,
        eps: float | None,
        enforce_eps: bool,
        budget: int | None,
        buffer_bytes: int = 16 << 20,
    ) -> None:
        self.x, self.y, self.targets = x, y, targets
        self.bounds = bounds
        self.norm, self.eps, self.enforce_eps = norm, eps, enforce_eps
        self.budget = budget
        self._tracks = [SampleTrack() for _ in range(len(x))]
        self.active: int | None = None
        self.stopped: set[int] = set()
        self._flat = x.reshape(len(x), -1).astype(np.float64)  # once per cell
        self._flat32 = self._flat.astype(np.float32)
        self._varies = np.ptp(self._flat, axis=1) > 0 if self._flat.size else np.zeros(len(x), bool)
        dim = max(self._flat.shape[1], 1)
        self._cap = max(64, buffer_bytes // (4 * dim))
        #: the buffer: answered rows (cap, *x.shape[1:]) float32, allocated on first use, and
        #: their top-1 labels; an oracle may write both through its framework's views
        self.buf_x: np.ndarray | None = None
        self.buf_pred = np.empty(self._cap, np.int64)
        self._buf_n = 0  # rows buffered for the active sample (not yet in its track)
        #: an oracle's own views of ``buf_x`` and ``buf_pred`` (e.g. tensors), made by it
        self.views: Any = None
        #: rows the hot path may take now (buffer room and what is left of the budget); 0
        #: until a sample's first query went through :meth:`answer`
        self.room = 0
        self._one_hot = np.eye(0, dtype=np.float32)
        #: float32 screening margin: relative error of a float32 reduction over ``dim`` terms
        self._rtol = max(1e-3, 8 * dim * float(np.finfo(np.float32).eps))

    @property
    def tracks(self) -> list[SampleTrack]:
        """What the oracle saw of each sample (buffered rows judged first)."""
        self._flush()
        return self._tracks

    def begin(self, i: int) -> None:
        """Attribute the following queries to sample ``i``."""
        self._flush()
        self.active = i
        self._update_room()

    def end(self) -> None:
        self._flush()
        self.active = None
        self.room = 0

    def answer(self, rows: np.ndarray, logits: np.ndarray, one_hot: bool = False) -> np.ndarray:
        """The oracle's answer for ``rows`` given the model's float32 ``logits`` for them (the
        oracle computes them in the framework); raises :class:`BudgetExhausted` past the
        budget. Returns the logits, or with ``one_hot`` the one-hot top-1 labels
        (decision-based)."""
        n = len(rows)
        if 0 < n <= self.room:
            # the hot path, a few NumPy calls: rows and top-1 labels go to the buffer
            b = self.reserve(n)
            self.buf_x[b : b + n] = rows  # type: ignore[index]
            pred = logits.argmax(axis=1, out=self.buf_pred[b : b + n])
            return self._one_hot[pred] if one_hot else logits
        return self._answer(rows, logits, one_hot)

    def reserve(self, n: int) -> int:
        """The hot path for an oracle that answers by itself: count ``n`` rows (only when
        ``0 < n <= room``) and return where in the buffer their copy and top-1 labels go
        (``buf_x[b:b+n]``, ``buf_pred[b:b+n]``); the caller writes them before its next
        call to the ledger. Anything else goes through :meth:`answer`."""
        b = self._buf_n
        self._buf_n = b + n
        self.room -= n
        return b

    def take(self, rows: np.ndarray, pred: np.ndarray) -> None:
        """:meth:`answer`'s accounting alone, for an oracle that makes its answer itself (on
        its device): count, buffer and judge ``rows`` given their top-1 labels ``pred``;
        raises :class:`BudgetExhausted` past the budget, as :meth:`answer`."""
        if len(rows):
            self._take(rows, pred)

    def goal_rows(self, pred: np.ndarray) -> np.ndarray:
        """Positions of the rows whose top-1 labels ``pred`` reach the active sample's goal:
        the only rows judging reads (a hot-path oracle may leave the others unwritten)."""
        assert self.active is not None
        return np.flatnonzero(self._goal(pred, self.active))

    def _goal(self, pred: np.ndarray, i: int) -> np.ndarray:
        """Whether each top-1 label reaches sample ``i``'s goal (its target, or not its label)."""
        goal = pred == self.targets[i] if self.targets is not None else pred != self.y[i]
        return np.asarray(goal, bool)

    def _answer(self, rows: np.ndarray, logits: np.ndarray, one_hot: bool) -> np.ndarray:
        """:meth:`answer` off the hot path: no active sample, buffer full or unset, budget."""
        n = len(rows)
        if n == 0:  # nothing to count
            if self.active is None:
                self._take(rows, np.zeros(0, np.int64))  # the error
            return np.zeros_like(logits) if one_hot else logits
        pred = logits.argmax(axis=1)
        if self._one_hot.shape[0] != logits.shape[1]:  # the hot path's one-hot answers too
            self._one_hot = np.eye(logits.shape[1], dtype=np.float32)
        self._take(rows, pred)
        return self._one_hot[pred] if one_hot else logits

    def _take(self, rows: np.ndarray, pred: np.ndarray) -> None:
        i = self.active
        if i is None:
            raise RuntimeError(
                "a black-box query arrived while no sample was active "
                "(the harness runs black-box cells one sample at a time)"
            )
        self._flush()
        track = self._tracks[i]
        n = len(rows)
        k = n if self.budget is None else max(0, min(n, self.budget - track.queries))
        if k:
            if self.buf_x is None:
                self.buf_x = np.empty((self._cap, *self.x.shape[1:]), np.float32)
            pred = pred if k == n else pred[:k]
            kept = rows if k == n else rows[:k]
            if k <= self._cap:  # into the buffer
                self.buf_x[:k] = kept
                self.buf_pred[:k] = pred
                self._buf_n = k
            else:  # larger than the buffer: judge it now
                flat = np.asarray(kept, np.float32).reshape(k, -1)
                self._judge(flat, pred, track.queries + 1 + np.arange(k), i)
                track.queries += k
        self._update_room()
        if k < n:
            self._flush()
            track.over_budget += n - k
            self.stopped.add(i)
            self.room = 0
            raise BudgetExhausted(f"sample {i} used its budget of {self.budget} queries")

    def exhausted(self) -> bool:
        """Whether the active sample's attack was stopped at its budget."""
        return self.active is not None and self.active in self.stopped

    # -- bulk judging ----------------------------------------------------------------------
    def _update_room(self) -> None:
        if self.active is None or self.buf_x is None:
            self.room = 0
            return
        left = (
            self.budget - self._tracks[self.active].queries - self._buf_n
            if self.budget is not None
            else self._cap
        )
        self.room = max(0, min(self._cap - self._buf_n, left))

    def _flush(self) -> None:
        """Judge the buffered rows of the active sample and add them to its track."""
        if self._buf_n and self.active is not None:
            assert self.buf_x is not None
            track = self._tracks[self.active]
            self._judge(
                self.buf_x[: self._buf_n].reshape(self._buf_n, -1),
                self.buf_pred[: self._buf_n],
                track.queries + 1 + np.arange(self._buf_n),
                self.active,
            )
            track.queries += self._buf_n
        self._buf_n = 0
        self._update_room()

    def _judge(self, rows: np.ndarray, pred: np.ndarray, qidx: np.ndarray, i: int) -> None:
        """Judge answered ``rows`` (flat float32, in query order; ``qidx``: each one's 1-based
        query index among sample ``i``'s) of sample ``i`` and record each improvement of its
        best valid adversarial."""
        track = self._tracks[i]
        cand = np.flatnonzero(self._goal(pred, i))
        if not cand.size:
            return
        delta = rows[cand] - self._flat32[i]
        approx = self._approx_norms(delta)
        approx[~np.isfinite(approx)] = np.inf  # non-finite rows are never valid
        if self.enforce_eps and self.eps is not None:  # certainly outside the ball: invalid
            atol = EPS_ATOL * input_scale(self.bounds)
            lim = self.eps * (1.0 + EPS_RTOL) + atol
            approx[approx > lim * (1 + self._rtol) + atol] = np.inf
        # Only rows that may beat every row before them by the float32 norm (with a margin)
        # get the referee's float64 norm; only the records among those are checked for
        # validity. An invalid record sets no record: drop it and repeat.
        exact = np.full(len(cand), np.inf)
        have = np.zeros(len(cand), bool)  # float64 norm computed
        valid = np.zeros(len(cand), bool)  # checked valid
        while True:
            prev = np.minimum.accumulate(np.concatenate([[track.best_norm], approx]))[:-1]
            screened = np.flatnonzero((approx <= prev * (1 + self._rtol) + EPS_ATOL) & (approx < np.inf))
            new = screened[~have[screened]]
            if new.size:
                exact[new] = self._exact_norms(rows[cand[new]], i)
                have[new] = True
            norms = exact[screened]
            record = np.minimum.accumulate(np.concatenate([[track.best_norm], norms]))[:-1]
            records = screened[norms < record]
            unchecked = records[~valid[records]]
            if not unchecked.size:
                break
            ok = self._valid(rows[cand[unchecked]], exact[unchecked], i)
            valid[unchecked[ok]] = True
            if ok.all():
                break
            approx[unchecked[~ok]] = np.inf
            exact[unchecked[~ok]] = np.inf
        if not records.size:
            return
        track.improvements.extend(
            zip(qidx[cand[records]].tolist(), exact[records].tolist(), strict=True)
        )  # in query order
        track.best_norm = track.improvements[-1][1]
        track.best_x = rows[cand[records[-1]]].reshape(self.x.shape[1:]).copy()

    def _approx_norms(self, delta: np.ndarray) -> np.ndarray:
        """Norms of float32 ``delta`` rows: float32 screens for l1/l2/linf, exact for l0."""
        if self.norm == "l2":
            return cast(np.ndarray, np.sqrt(np.einsum("ij,ij->i", delta, delta)))
        if self.norm == "linf":
            return np.abs(delta).max(axis=1) if delta.shape[1] else np.zeros(len(delta))
        if self.norm == "l1":
            return cast(np.ndarray, np.abs(delta).sum(axis=1))
        out = norm_of(delta, self.norm)  # l0 counts: exact (no margin makes sense)
        out[~np.isfinite(delta.sum(axis=1))] = np.inf
        return out

    def _exact_norms(self, rows: np.ndarray, i: int) -> np.ndarray:
        """The referee's float64 norms of ``rows`` from sample ``i``'s input (inf if NaN)."""
        delta = np.subtract(rows, self._flat[i], dtype=np.float64)
        norms = norm_of(delta, self.norm)
        return np.where(np.isnan(norms), np.inf, norms)

    def _valid(self, rows: np.ndarray, norms: np.ndarray, i: int) -> np.ndarray:
        """The referee's validity of adversarial ``rows``: finite, in the box, not degenerate
        and, for fixed-budget attacks, inside the eps-ball. Decided from each row's minimum
        and maximum, which are exact in the rows' own dtype and compare exactly in float64."""
        lo, hi = self.bounds
        mn = rows.min(axis=1).astype(np.float64)  # NaN propagates; an inf shows in one of them
        mx = rows.max(axis=1).astype(np.float64)
        ok = np.isfinite(mn) & np.isfinite(mx)
        scale = input_scale(self.bounds)
        ok &= (mn >= lo - BOX_ATOL * scale) & (mx <= hi + BOX_ATOL * scale)
        if self._varies[i]:
            ok &= mx > mn  # a constant image is degenerate
        if self.enforce_eps and self.eps is not None:
            ok &= within_eps(norms, self.eps, scale)
        return np.asarray(ok)

    # -- results -------------------------------------------------------------------------
    def ambiguous_counts(self) -> np.ndarray:
        """Per sample, the ambiguous rows charged to it (none: one sample per call)."""
        return np.zeros(len(self.x), np.int64)

    def best_within_budget(self) -> np.ndarray:
        """Each sample's best valid adversarial seen in budget, else its clean input."""
        out = np.array(self.x, dtype=np.float32, copy=True)
        for i, t in enumerate(self.tracks):
            if t.best_x is not None:
                out[i] = t.best_x
        return out

    def columns(self, levels: tuple[int, ...]) -> dict[str, np.ndarray]:
        """Per-sample record columns: queries, refused rows, first success, norm at levels."""
        cols: dict[str, np.ndarray] = {
            "queries": np.array([t.queries for t in self.tracks], dtype=np.int64),
            "queries_refused": np.array([t.over_budget for t in self.tracks], dtype=np.int64),
            "stopped_at_budget": np.array([i in self.stopped for i in range(len(self.tracks))]),
            "first_success_query": np.array([t.first_success() for t in self.tracks]),
            "queries_ambiguous": self.ambiguous_counts(),
        }
        for level in levels:
            cols[f"norm_at_q{level}"] = np.array([t.norm_at(level) for t in self.tracks])
        return cols
