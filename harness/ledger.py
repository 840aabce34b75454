"""Per-sample query accounting for black-box cells: exact counts, budgets, best-in-budget.

A black-box cell calls the library once per sample (see :func:`harness.cell`), so every row a
query-only oracle receives while sample ``i`` is active belongs to sample ``i``: the count is
exact however the library re-batches, subsets or duplicates inputs internally. The oracles
(:mod:`harness.torch_model`, :mod:`harness.tf_model`) hand every query to
:meth:`QueryLedger.answer`, which

* counts the rows against the active sample;
* answers truthfully (the model's logits) while the sample is within its ``budget``. A query
  that does not fit in what is left stops the library for that sample: the rows that still
  fit are evaluated (and count), then :class:`BudgetExhausted` is raised and the harness
  keeps the best result reached within the budget. (Answering past the budget with anything,
  e.g. the clean input's answer, contradicts earlier answers, and searches such as
  HopSkipJump's step-size halving then never end.)
* judges every truthfully answered row with the referee's rules (goal reached, finite, inside
  the box, not degenerate, inside the eps-ball for fixed-budget attacks) and keeps the best
  (smallest-norm) adversarial row and the query index at which each improvement happened,
  which gives success and norms at any query level without extra forward passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from harness.referee import BOX_ATOL, norm_of, within_eps

#: Query levels at which success is reported when a spec names none.
DEFAULT_QUERY_LEVELS: tuple[int, ...] = (100, 1000, 10000)


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

    def first_success(self, eps: float | None = None) -> float:
        """1-based index of the first query that was a valid adversarial (within ``eps``)."""
        for q, n in self.improvements:
            if eps is None or bool(within_eps(np.array([n]), eps)[0]):
                return float(q)
        return float("nan")

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

    ``forward`` is the harness's uncounted forward pass (logits); ``x`` the cell's inputs in
    the model's layout, ``y`` labels, ``targets`` target classes (targeted cells) or None.
    """

    def __init__(self, *, x: np.ndarray, y: np.ndarray, targets: np.ndarray | None,
                 forward: Callable[[np.ndarray], np.ndarray], bounds: tuple[float, float],
                 norm: str, eps: float | None, enforce_eps: bool, budget: int | None) -> None:
        self.x, self.y, self.targets = x, y, targets
        self.forward = forward
        self.bounds = bounds
        self.norm, self.eps, self.enforce_eps = norm, eps, enforce_eps
        self.budget = budget
        self.tracks = [SampleTrack() for _ in range(len(x))]
        self.active: int | None = None
        self.stopped: set[int] = set()
        self._flat = x.reshape(len(x), -1).astype(np.float64)  # hot path: once per cell
        self._varies = np.ptp(self._flat, axis=1) > 0

    def begin(self, i: int) -> None:
        """Attribute the following queries to sample ``i``."""
        self.active = i

    def end(self) -> None:
        self.active = None

    def answer(self, rows: np.ndarray, logits: np.ndarray | None = None) -> np.ndarray:
        """The oracle's logits for ``rows``; raises :class:`BudgetExhausted` past the budget.

        ``logits``: the model's outputs for ``rows`` if the oracle already computed them
        (in the framework, e.g. inside a compiled graph); else ``forward`` computes them.
        """
        if self.active is None:
            raise RuntimeError("a black-box query arrived while no sample was active "
                               "(the harness runs black-box cells one sample at a time)")
        i, track = self.active, self.tracks[self.active]
        rows = np.asarray(rows, dtype=np.float32)
        n = len(rows)
        k = n if self.budget is None else max(0, min(n, self.budget - track.queries))
        if logits is not None:
            logits = np.asarray(logits, dtype=np.float32)[:k] if k else None
        elif k:
            logits = np.asarray(self.forward(rows[:k]), dtype=np.float32)
        if logits is not None:
            self._track(i, rows[:k], logits)
        if k < n:
            track.over_budget += n - k
            self.stopped.add(i)
            raise BudgetExhausted(f"sample {i} used its budget of {self.budget} queries")
        assert logits is not None
        return logits

    def exhausted(self) -> bool:
        """Whether the active sample's attack was stopped at its budget."""
        return self.active is not None and self.active in self.stopped

    def _track(self, i: int, rows: np.ndarray, logits: np.ndarray) -> None:
        track = self.tracks[i]
        start, track.queries = track.queries, track.queries + len(rows)
        pred = logits.argmax(axis=1)
        goal = pred == self.targets[i] if self.targets is not None else pred != self.y[i]
        if not goal.any():
            return
        cand = np.flatnonzero(goal)
        adv = rows[cand].reshape(len(cand), -1)
        lo, hi = self.bounds
        ok = np.isfinite(adv).all(axis=1)
        ok &= ~((adv < lo - BOX_ATOL) | (adv > hi + BOX_ATOL)).any(axis=1)
        if self._varies[i]:
            ok &= np.ptp(adv, axis=1) > 0  # a constant image is degenerate
        norms = norm_of(np.where(np.isfinite(adv), adv, 0.0) - self._flat[i], self.norm)
        if self.enforce_eps and self.eps is not None:
            ok &= within_eps(norms, self.eps)
        for j in np.flatnonzero(ok):
            if norms[j] < track.best_norm:
                track.best_norm = float(norms[j])
                track.best_x = rows[cand[j]].copy()
                track.improvements.append((start + int(cand[j]) + 1, float(norms[j])))

    # -- results -------------------------------------------------------------------------
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
        }
        if self.eps is not None and not self.enforce_eps:
            cols["first_success_query_at_eps"] = np.array(
                [t.first_success(self.eps) for t in self.tracks])
        for level in levels:
            cols[f"norm_at_q{level}"] = np.array([t.norm_at(level) for t in self.tracks])
        return cols
