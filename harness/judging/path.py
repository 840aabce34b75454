"""What a white-box attack passed through the counting wrapper: best adversarial seen per
sample (Indicator I3, *silent success*) and per-sample loss traces (Indicator I4).

The counting wrapper hands every forward pass (its rows and the model's logits for them)
to the running cell's :class:`PathRecorder`. The framework's side (:class:`PathOps`) keeps
the originals and the best rows on the model's device and returns a few numbers per row
(distances, row minimum/maximum/sum, logits) to the host, where this module decides.

**Attribution.** White-box libraries pass the batch in its order or chunks of it
(``batch_size``); restarts re-run it. A row belongs to the original nearest to it in the
spec's norm (as AttackBench does), and no row is attributed on a guess:

* *fast path*: the batch is a contiguous chunk of the originals (tried at the previous
  chunk, the next one and 0); row ``i`` is confirmed when its distance to original
  ``off + i`` is below half that original's distance to its nearest other original (then
  that original is the nearest, by the triangle inequality);
* other rows are searched against every original: a row is attributed when its position
  in the chunk is its unique nearest original, or when it lies within half of its nearest
  original's separation; otherwise (e.g. equally near two originals) it is *ambiguous*:
  counted, and not used.

L0 attributes by the exact count of changed coordinates (a metric); validity uses the
referee's L0 (changes above ``L0_ATOL``). Rows with NaN/inf are never valid and carry no
loss.

**Validity** is the referee's, from the wrapper's own logits: the sample was classified
correctly, the row's prediction meets the goal (differs from the label, or equals the
target), it is finite, inside the box (``BOX_ATOL``), not a constant image from a
non-constant input, and, for fixed-budget attacks, inside the eps-ball (``within_eps``;
rows within float32 rounding of the radius are re-measured in float64). The *best* row
seen is the valid one of smallest norm in the spec's norm (for fixed-budget attacks any
valid row would do; the smallest is kept).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np

from advharness.judging.attribution import SEP_MARGIN as _SEP_MARGIN
from advharness.judging.attribution import confirmed, unique
from advharness.judging.referee import BOX_ATOL, EPS_ATOL, EPS_RTOL, input_scale, within_eps
from advharness.judging.trace import I4_THRESHOLD, LossTraces

#: Memory for the loss traces of one cell (float32): the ring holds at most
#: ``TRACE_BYTES / (4 n)`` passes per sample, between 16 and :data:`TRACE_MAX_PASSES`.
TRACE_BYTES = 32 << 20
TRACE_MAX_PASSES = 4096
_F32 = float(np.finfo(np.float32).eps)


class PathOps(ABC):
    """A framework's side of path recording: the cell's originals (in the model's layout)
    and the best rows seen stay on the model's device; each method returns only small
    host arrays. ``x`` arguments are the rows of one forward pass as the framework's
    tensor; ``rows`` index them, ``samples`` index the originals."""

    n: int
    #: the shape of one original (model layout)
    shape: tuple[int, ...]

    def __init__(
        self, separation: np.ndarray | None = None, remember: Callable[[np.ndarray], None] | None = None
    ) -> None:
        self._separation = separation
        self._remember = remember

    def separation(self) -> np.ndarray:
        """Each original's attribution distance to its nearest other original (inf if
        alone), computed on first use (``remember`` is told, to keep it for the model's next
        cells on the same batch) unless given."""
        if self._separation is None:
            self._separation = self._separations() if self.n > 1 else np.full(self.n, np.inf)
            if self._remember is not None:
                self._remember(self._separation)
        return self._separation

    @abstractmethod
    def summarize(self, x: Any, logits: Any, offset: int | None) -> np.ndarray:
        """One host array (B, 5 + K), float64: distance to original ``offset + i``
        (attribution metric), the spec norm of that difference (NaN without an offset),
        each row's minimum, maximum and sum, and the logits."""

    @abstractmethod
    def positional(self, x: Any, offset: int) -> np.ndarray:
        """(B, 2): attribution distance and spec norm of row ``i`` from original ``offset + i``."""

    @abstractmethod
    def nearest(self, x: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The two nearest originals of ``x[rows]`` (attribution metric): indices (b, 2) and
        distances (b, 2); with one original, the second is (0, inf)."""

    @abstractmethod
    def norms_to(self, x: Any, rows: np.ndarray, samples: np.ndarray, exact: bool) -> np.ndarray:
        """Spec norms of ``x[rows] - original[samples]`` (``exact``: in float64)."""

    @abstractmethod
    def _separations(self) -> np.ndarray:
        """:meth:`separation` for two or more originals: a lower bound is enough (it only
        makes confirmation stricter)."""

    @abstractmethod
    def keep(self, x: Any, rows: np.ndarray, samples: np.ndarray) -> None:
        """Store ``x[rows]`` as the best seen rows of ``samples`` (unique)."""

    @abstractmethod
    def best(self) -> np.ndarray:
        """The best rows kept, in the originals' shape (the original where none)."""


class PathRecorder:
    """Best valid adversarial seen and loss trace per sample, for one white-box cell.

    ``y`` labels, ``targets`` target classes (targeted cells) or None, ``correct`` whether
    the model classified each sample correctly, ``varies`` whether each original is not a
    constant image; ``enforce_eps``: fixed-budget (rows outside the eps-ball are invalid).
    """

    def __init__(
        self,
        ops: PathOps,
        *,
        y: np.ndarray,
        targets: np.ndarray | None,
        correct: np.ndarray,
        varies: np.ndarray,
        bounds: tuple[float, float],
        norm: str,
        eps: float | None,
        enforce_eps: bool,
        trace_passes: int | None = None,
    ) -> None:
        self.ops = ops
        n = ops.n
        self.n = n
        self._goal = np.asarray(targets if targets is not None else y, np.int64)
        self.targeted = targets is not None
        self._correct = np.asarray(correct, bool)
        self._varies = np.asarray(varies, bool)
        self.bounds = bounds
        self.norm, self.eps, self.enforce_eps = norm, eps, enforce_eps
        self._scale = input_scale(bounds)
        self._radius_cache: np.ndarray | None = None  # on the first pass: O(n^2 d)
        #: relative error of a float32 norm: L-inf one rounding of the difference, L1/L2 a
        #: sum over the row (as the ledger bounds it); L0 counts exactly (None)
        dim = int(np.prod(ops.shape)) if ops.shape else 1
        self._float_rtol = {"linf": 4 * _F32, "l0": None}.get(norm, max(1e-5, 8 * dim * _F32))
        cap = trace_passes or int(np.clip(TRACE_BYTES // (4 * max(n, 1)), 16, TRACE_MAX_PASSES))
        self.traces = LossTraces(n, cap)
        self.best_norm = np.full(n, np.inf)
        self.rows = 0  # forward rows seen
        self.rows_ambiguous = 0  # finite rows no original could be attributed to with certainty
        self._last: tuple[int, int] | None = None  # (offset, rows) of the last chunk

    @property
    def _radius(self) -> np.ndarray:
        """Half of each original's separation, less a float margin: a row nearer than this
        to an original has no nearer original (:func:`~advharness.judging.attribution.confirmed`)."""
        if self._radius_cache is None:
            self._radius_cache = self.ops.separation() / 2 * (1 - _SEP_MARGIN)
        return self._radius_cache

    # -- the hot path --------------------------------------------------------------------
    def observe(self, x: Any, logits: Any) -> None:
        """One forward pass: rows ``x`` (the framework's tensor) and their logits."""
        offsets = self._offsets(self._rows_of(x))
        info = self.ops.summarize(x, logits, offsets[0] if offsets else None)
        b = len(info)
        self.rows += b
        if not b:
            return
        finite = np.isfinite(info[:, 4])
        sample, norms = self._attribute(x, info, offsets, finite)
        self._judge(x, info, sample, norms)

    @staticmethod
    def _rows_of(x: Any) -> int:
        return int(x.shape[0])

    def _offsets(self, b: int) -> list[int]:
        """Chunks of the originals the rows may be: the last one again, the next, the first."""
        guesses = [0] if self._last is None else [self._last[0], self._last[0] + self._last[1], 0]
        return list(dict.fromkeys(o for o in guesses if 0 < b and o + b <= self.n))

    def _attribute(
        self, x: Any, info: np.ndarray, offsets: list[int], finite: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each row's sample (-1: not attributed) and its spec norm from that sample."""
        b = len(info)
        sample = np.full(b, -1, np.int64)
        norms = np.full(b, np.nan)
        index = np.arange(b)
        pos_dist = info[:, 0]
        confirmed_ = np.zeros(b, bool)
        offset = offsets[0] if offsets else None
        if offset is not None:
            sep = self.ops.separation()
            confirmed_ = confirmed(pos_dist, sep[offset : offset + b], finite)
            norms = info[:, 1].copy()
            if confirmed_.sum() * 2 < b:  # mostly not this chunk: try the others
                for other in offsets[1:]:
                    pos = self.ops.positional(x, other)
                    ok = confirmed(pos[:, 0], sep[other : other + b], finite)
                    if ok.sum() > confirmed_.sum():
                        offset, confirmed_, pos_dist, norms = other, ok, pos[:, 0], pos[:, 1].copy()
            sample[confirmed_] = offset + index[confirmed_]
        placed = int(confirmed_.sum())  # rows attributed by their place in the chunk
        rest = np.flatnonzero(finite & ~confirmed_)
        if rest.size:
            idx, dist = self.ops.nearest(x, rest)
            near, d1 = idx[:, 0], dist[:, 0]
            alone = unique(d1, dist[:, 1])
            by_position = np.zeros(rest.size, bool)
            if offset is not None:  # the row's place in the chunk is its unique nearest
                by_position = alone & (pos_dist[rest] <= d1 * (1 + _SEP_MARGIN))
                sample[rest[by_position]] = offset + rest[by_position]
                placed += int(by_position.sum())
            by_radius = ~by_position & (d1 < self._radius[near])
            moved = rest[by_radius]
            if moved.size:
                sample[moved] = near[by_radius]
                norms[moved] = self.ops.norms_to(x, moved, near[by_radius], exact=False)
            self.rows_ambiguous += int(rest.size - by_position.sum() - by_radius.sum())
        if offset is not None and placed:
            self._last = (offset, b)
        return sample, norms

    def _judge(self, x: Any, info: np.ndarray, sample: np.ndarray, norms: np.ndarray) -> None:
        rows = np.flatnonzero(sample >= 0)
        if not rows.size:
            return
        s = sample[rows]
        logits = info[rows, 5:]
        goal = self._goal[s]
        # loss per row, minimised by the attack: -CE(label) untargeted, CE(target) targeted
        top = logits.max(axis=1, keepdims=True)
        lse = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
        ce = lse - logits[np.arange(rows.size), goal]
        loss = ce if self.targeted else -ce
        pred = logits.argmax(axis=1)
        hit = pred == goal if self.targeted else pred != goal
        lo, hi = self.bounds
        mn, mx = info[rows, 2], info[rows, 3]
        valid = (
            hit
            & np.isfinite(logits).all(axis=1)
            & self._correct[s]
            & (mn >= lo - BOX_ATOL * self._scale)
            & (mx <= hi + BOX_ATOL * self._scale)
            & ~(self._varies[s] & (mx == mn))
        )
        n_rows = norms[rows]
        if self.enforce_eps and self.eps is not None and valid.any():
            n_rows = self._exact_at_radius(x, rows, s, n_rows, valid)
            valid &= within_eps(n_rows, self.eps, self._scale)
        self._keep_best(x, rows[valid], s[valid], n_rows[valid])
        self._trace(s, loss)

    def _exact_at_radius(
        self, x: Any, rows: np.ndarray, s: np.ndarray, n_rows: np.ndarray, valid: np.ndarray
    ) -> np.ndarray:
        """``n_rows`` with the rows within float32 rounding of the eps limit re-measured in
        float64, as the referee measures them."""
        assert self.eps is not None
        if self._float_rtol is None:
            return n_rows  # L0: counts, exact in float32
        limit = self.eps * (1.0 + EPS_RTOL) + EPS_ATOL * self._scale
        close = valid & (np.abs(n_rows - limit) <= self._float_rtol * limit)
        if close.any():
            n_rows = n_rows.copy()
            n_rows[close] = self.ops.norms_to(x, rows[close], s[close], exact=True)
        return n_rows

    def _keep_best(self, x: Any, rows: np.ndarray, s: np.ndarray, n_rows: np.ndarray) -> None:
        if not rows.size:
            return
        order = np.lexsort((n_rows, s))  # per sample, its smallest norm first
        first = order[np.r_[True, s[order][1:] != s[order][:-1]]]
        better = n_rows[first] < self.best_norm[s[first]]
        pick = first[better]
        if pick.size:
            self.best_norm[s[pick]] = n_rows[pick]
            self.ops.keep(x, rows[pick], s[pick])

    def _trace(self, s: np.ndarray, loss: np.ndarray) -> None:
        uniq, inverse = np.unique(s, return_inverse=True)
        if uniq.size == s.size:
            self.traces.append(uniq, loss[np.argsort(s, kind="stable")])
            return
        per = np.full(uniq.size, np.inf)
        np.fmin.at(per, inverse, loss)  # a pass with several rows of a sample: its best
        self.traces.append(uniq, per)

    # -- results -------------------------------------------------------------------------
    def columns(self, success: np.ndarray, iterative: bool = True) -> dict[str, np.ndarray]:
        """Per-sample record columns, given the referee's ``success`` of the returned points;
        ``iterative`` False (a single-step or sampling attack: nothing to converge) leaves
        ``incomplete_optimization`` False."""
        seen = np.isfinite(self.best_norm)
        tail = self.traces.tail_range()
        failed = self._correct & ~np.asarray(success, bool)
        return {
            "seen_success": seen,
            "seen_norm": self.best_norm.copy(),
            "silent_success": seen & failed,
            "loss_trace_length": self.traces.length.copy(),
            "loss_trace_tail_range": tail,
            "incomplete_optimization": failed & (np.nan_to_num(tail) > I4_THRESHOLD) & iterative,
        }

    def best_seen(self) -> np.ndarray:
        """Each sample's best valid row seen (its original where none), in the model's layout."""
        return self.ops.best()
