"""The query ledger of a batched black-box cell: one library call per chunk of samples.

Every row the oracle answers during a call on the samples ``group`` is attributed to one of
them (see :mod:`advharness.judging.attribution`):

* ``position``: the library's every query holds one row per input of the call, in input
  order (declared per library and attack in :data:`advharness.config.querymode.POSITIONAL`):
  row ``k`` is sample ``group[k]``'s, exactly, however far it lies from it; a query of any
  other size is refused with an error (the declaration does not hold);
* ``distance``: the nearest original of the call, by the chunk rule where it confirms a
  guess (the previous query's samples, the call's first rows) and by search otherwise; a
  row with a second original within the margin (``reach``: the eps-ball's radius for
  fixed-budget cells) is *ambiguous*. Non-finite rows are ambiguous among every sample of
  the call.

An ambiguous row is charged to every candidate (a query of each, so no budget is ever
exceeded through it), counted (``queries_ambiguous``) and never judged.

Budgets hold per sample as in per-sample mode: a sample's rows past its budget are answered
truthfully (an answer that contradicts earlier ones makes searches such as HopSkipJump's
step-size halving never end) but neither counted as its queries nor judged (they count in
``queries_refused`` and set ``stopped_at_budget``), so its result stays the best valid
adversarial among its first ``budget`` queries. Once every sample of the call has spent its
budget (or, in a fixed-budget cell, already has a valid adversarial within it: its success
cannot improve), the next query raises
:class:`BudgetExhausted`, which stops the call.

Answered rows are buffered with their sample and per-sample query index, and judged in bulk
per sample, as in :class:`QueryLedger`.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from advharness.config.querymode import Attribution
from advharness.judging.attribution import confirmed, margin, pairwise, row_norms, separations
from advharness.judging.ledger import BudgetExhausted, QueryLedger, SampleTrack


class BatchedLedger(QueryLedger):
    """Per-sample counts, budgets and best adversarials when one call attacks many samples.

    ``attribution``: ``distance`` or ``position``; ``reach``: the attribution margin (the
    eps-ball's radius of a fixed-budget cell, else 0). Other arguments as :class:`QueryLedger`.
    """

    def __init__(self, *, attribution: Attribution = "distance", reach: float = 0.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.attribution = attribution
        self.reach = float(reach)
        n = len(self.x)
        self.group: np.ndarray | None = None  # the samples of the running call
        self._orig_g = np.zeros((0, self._flat.shape[1]), np.float32)
        self._sep_g = np.zeros(0)
        self._guess: np.ndarray | None = None  # the previous query's group positions
        self._halted = False  # the running call was stopped at the budget
        self._count = np.zeros(n, np.int64)  # queries charged within the budget
        self._refused = np.zeros(n, np.int64)  # rows past the budget
        self._ambiguous = np.zeros(n, np.int64)  # ambiguous rows charged (within the budget)
        self._won = np.zeros(n, bool)  # a valid adversarial within the budget (as last judged)
        self._since = 0  # queries since the buffer was last judged to see who has won
        self._buf_sample = np.empty(self._cap, np.int64)
        self._buf_q = np.empty(self._cap, np.int64)
        #: rows by how they were attributed: position, chunk rule, search, ambiguous
        self.by = {"position": 0, "chunk": 0, "search": 0, "ambiguous": 0}

    # -- calls -----------------------------------------------------------------------------
    def begin(self, i: int) -> None:
        self.begin_group(np.array([i]))

    def begin_group(self, samples: np.ndarray) -> None:
        """Attribute the following queries to the samples ``samples`` (one library call on
        them, in this order)."""
        self._flush()
        self.group = np.asarray(samples, np.int64)
        self._orig_g = self._flat32[self.group]
        self._sep_g = separations(self._orig_g, self.norm) if self.attribution == "distance" else np.zeros(0)
        self._guess = None
        self._halted = False
        self.room = 0  # every query goes through answer(): attribution comes first

    def end(self) -> None:
        self._flush()
        self.group = None
        self.room = 0

    def exhausted(self) -> bool:
        """Whether the running call was stopped because its samples spent their budgets."""
        return self._halted

    # -- the oracle's side -----------------------------------------------------------------
    def answer(self, rows: np.ndarray, logits: np.ndarray, one_hot: bool = False) -> np.ndarray:
        """Attribute, count and buffer ``rows``; the logits (or one-hot labels) back, or
        :class:`BudgetExhausted` once every sample of the call has spent its budget."""
        if self.group is None:
            raise RuntimeError("a black-box query arrived while no library call was running")
        if len(rows) == 0:
            return np.zeros_like(logits) if one_hot else logits
        if self._one_hot.shape[0] != logits.shape[1]:
            self._one_hot = np.eye(logits.shape[1], dtype=np.float32)
        pred = logits.argmax(axis=1)
        self._take(rows, pred)
        return self._one_hot[pred] if one_hot else logits

    def _take(self, rows: np.ndarray, pred: np.ndarray) -> None:
        """Attribute, count and buffer ``rows`` (top-1 labels ``pred``); every row is read
        (attribution by distance needs each one on the host)."""
        g = self.group
        if g is None:
            raise RuntimeError("a black-box query arrived while no library call was running")
        n = len(rows)
        flat = np.asarray(rows, np.float32).reshape(n, -1)
        row, sample, amb, distinct = self._attribute(flat)
        if self.budget is not None and self._call_done():
            np.add.at(self._refused, sample, 1)  # refused: nothing more for these samples
            spent = np.unique(sample[self._count[sample] >= self.budget])
            self.stopped.update(spent.tolist())
            self._halted = True
            raise BudgetExhausted(
                f"samples {g.tolist()} used their budget of {self.budget} queries "
                "(or, fixed-budget, found a valid adversarial within it)"
            )
        if distinct:
            self._charge_distinct(flat, pred, sample)
        else:
            self._charge(flat, pred, row, sample, amb)

    def _call_done(self) -> bool:
        """Whether every sample of the call has spent its budget or, in a fixed-budget cell
        (where success cannot improve), already has a valid adversarial within it: the
        library has nothing left to do that the result could use. Who has won is judged
        from the buffer at most every 16 queries (a stop comes at most that much later)."""
        g = self.group
        assert g is not None and self.budget is not None
        spent = self._count[g] >= self.budget
        if spent.all():
            return True
        if not (self.enforce_eps and self.eps is not None):
            return False  # minimum-norm: later queries still improve the result
        if (spent | self._won[g]).all():
            return True
        self._since += 1
        if self._since < 16:
            return False
        self._since = 0
        self._flush()
        self._won[g] = [self._tracks[i].best_x is not None for i in g.tolist()]
        return bool((spent | self._won[g]).all())

    def _attribute(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """Charges of one query: (row, sample, ambiguous) per charge, in row order, and
        whether they are simply one distinct sample per row (row ``k``: ``sample[k]``)."""
        g = self.group
        assert g is not None
        n, m = len(flat), len(g)
        if self.attribution == "position":
            if n != m:
                raise RuntimeError(
                    f"a query of {n} rows during a library call on {m} inputs: the declared "
                    "query structure (one row per input, in input order) does not hold; run "
                    "this attack with query_mode: per-sample"
                )
            self.by["position"] += n
            return np.arange(n), g, np.zeros(n, bool), True
        finite = np.isfinite(flat).all(axis=1)
        owner = np.full(n, -1, np.int64)
        ok = np.zeros(n, bool)
        for guess in self._guesses(n, m):
            d = row_norms(flat - self._orig_g[guess], self.norm)[0]
            hit = confirmed(d.astype(np.float64), self._sep_g[guess], finite, self.reach)
            if hit.sum() > ok.sum():
                ok, owner = hit, np.where(hit, guess, -1)
            if ok.sum() * 2 >= n:
                break
        self.by["chunk"] += int(ok.sum())
        if ok.all():  # a guess of distinct samples, all confirmed
            self._guess = owner
            return np.arange(n), g[owner], np.zeros(n, bool), True
        rows_amb: list[np.ndarray] = []
        samples_amb: list[np.ndarray] = []
        rest = np.flatnonzero(finite & ~ok)
        if rest.size:
            dist = pairwise(flat[rest], self._orig_g, self.norm)
            d1 = dist.min(axis=1)
            within = dist <= margin(d1, self.reach)[:, None]
            alone = within.sum(axis=1) == 1
            owner[rest[alone]] = dist[alone].argmin(axis=1)
            self.by["search"] += int(alone.sum())
            r, c = np.nonzero(within[~alone])
            rows_amb.append(rest[~alone][r])
            samples_amb.append(c)
        bad = np.flatnonzero(~finite)  # no distance: any sample of the call
        if bad.size:
            rows_amb.append(np.repeat(bad, m))
            samples_amb.append(np.tile(np.arange(m), bad.size))
        n_amb = n - int((owner >= 0).sum())
        self.by["ambiguous"] += n_amb
        self._guess = owner if n_amb == 0 and np.unique(owner).size == n else None
        mine = np.flatnonzero(owner >= 0)
        row = np.concatenate([mine, *rows_amb])
        pos = np.concatenate([owner[mine], *samples_amb])
        amb = np.concatenate([np.zeros(mine.size, bool), np.ones(row.size - mine.size, bool)])
        return row, g[pos], amb, False

    def _guesses(self, n: int, m: int) -> list[np.ndarray]:
        """Group positions the query's rows may be: the previous query's, then the first
        ``n`` (a library's whole batch, or its first chunk)."""
        out = []
        if self._guess is not None and len(self._guess) == n:
            out.append(self._guess)
        if n <= m:
            out.append(np.arange(n))
        return out

    def _charge_distinct(self, flat: np.ndarray, pred: np.ndarray, sample: np.ndarray) -> None:
        """:meth:`_charge` when row ``k`` is distinct sample ``sample[k]``'s: no sorting."""
        q = self._count[sample] + 1
        if self.budget is not None and not bool((q <= self.budget).all()):
            self._charge(flat, pred, np.arange(len(sample)), sample, np.zeros(len(sample), bool))
            return
        self._count[sample] = q
        k = len(sample)
        if self.buf_x is None:
            self.buf_x = np.empty((self._cap, *self.x.shape[1:]), np.float32)
        if self._buf_n + k > self._cap:
            self._flush()
        if k > self._cap:
            self._judge_grouped(flat, pred, sample, q)
            return
        b = self._buf_n
        self.buf_x.reshape(self._cap, -1)[b : b + k] = flat
        self.buf_pred[b : b + k] = pred
        self._buf_sample[b : b + k] = sample
        self._buf_q[b : b + k] = q
        self._buf_n = b + k

    def _charge(
        self, flat: np.ndarray, pred: np.ndarray, row: np.ndarray, sample: np.ndarray, amb: np.ndarray
    ) -> None:
        """Count each charge against its sample's budget; buffer the attributed rows within it."""
        order = np.lexsort((row, sample))  # per sample, in row (query) order
        s = sample[order]
        first = np.flatnonzero(np.concatenate([[True], s[1:] != s[:-1]]))
        rank = np.arange(len(s)) - np.repeat(first, np.diff(np.append(first, len(s))))
        q = self._count[s] + rank + 1  # each charge's query index among its sample's
        within = q <= self.budget if self.budget is not None else np.ones(len(s), bool)
        self._count += np.bincount(s[within], minlength=len(self._count))
        if not within.all():
            self._refused += np.bincount(s[~within], minlength=len(self._count))
            self.stopped.update(np.unique(s[~within]).tolist())
        a = amb[order]
        self._ambiguous += np.bincount(s[within & a], minlength=len(self._count))
        keep = within & ~a
        if not keep.any():
            return
        r = row[order][keep]
        k = len(r)
        if self.buf_x is None:
            self.buf_x = np.empty((self._cap, *self.x.shape[1:]), np.float32)
        if self._buf_n + k > self._cap:
            self._flush()
        if k > self._cap:  # larger than the buffer: judge it now
            self._judge_grouped(flat[r], pred[r], s[keep], q[keep])
            return
        b = self._buf_n
        self.buf_x.reshape(self._cap, -1)[b : b + k] = flat[r]
        self.buf_pred[b : b + k] = pred[r]
        self._buf_sample[b : b + k] = s[keep]
        self._buf_q[b : b + k] = q[keep]
        self._buf_n = b + k

    # -- bulk judging ----------------------------------------------------------------------
    def _update_room(self) -> None:
        self.room = 0

    def _flush(self) -> None:
        """Judge the buffered rows, per sample."""
        n = self._buf_n
        if n:
            assert self.buf_x is not None
            self._judge_grouped(
                self.buf_x[:n].reshape(n, -1), self.buf_pred[:n], self._buf_sample[:n], self._buf_q[:n]
            )
        self._buf_n = 0

    def _judge_grouped(self, flat: np.ndarray, pred: np.ndarray, sample: np.ndarray, q: np.ndarray) -> None:
        order = np.argsort(sample, kind="stable")  # rows of one sample stay in query order
        s = sample[order]
        cuts = np.flatnonzero(np.r_[True, s[1:] != s[:-1], True])
        for a, b in itertools.pairwise(cuts):
            idx = order[a:b]
            self._judge(flat[idx], pred[idx], q[idx], int(s[a]))

    # -- results ---------------------------------------------------------------------------
    @property
    def tracks(self) -> list[SampleTrack]:
        self._flush()
        for t, c, r in zip(self._tracks, self._count.tolist(), self._refused.tolist(), strict=True):
            t.queries, t.over_budget = c, r
        return self._tracks

    def ambiguous_counts(self) -> np.ndarray:
        return self._ambiguous.copy()
