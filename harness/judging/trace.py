"""Per-sample loss traces of a white-box attack, and Indicator I4 (incomplete optimization).

The counting wrapper hands the loss of every forward row attributed to a sample to
:class:`LossTraces` (one value per sample and forward pass: the smallest, when a pass holds
several rows of one sample). The sign is such that the attack minimises it: ``-CE(logits,
label)`` untargeted, ``CE(logits, target)`` targeted.

Memory is bounded: each sample keeps its last ``cap`` values (float32) in a ring, plus its
exact minimum, maximum and the minimum of the values that left the ring, which is all the
indicator needs: it is exact however long the attack ran.
"""

from __future__ import annotations

from typing import cast

import numpy as np

#: Indicator I4 (Pintor et al. 2022): the trace rescaled to [0, 1] and made monotone by a
#: running minimum still fell by more than this over its last :data:`I4_WINDOW` passes.
I4_THRESHOLD = 0.05
I4_WINDOW = 10


class LossTraces:
    """The loss of each of ``n`` samples per forward pass: the last ``cap`` passes (float32)."""

    def __init__(self, n: int, cap: int) -> None:
        self.cap = max(int(cap), I4_WINDOW + 1)
        self.n = n
        self._values: np.ndarray | None = None  # (n, cap) float32, on first use
        self.length = np.zeros(n, np.int64)  # passes seen per sample (may exceed cap)
        self._lo = np.full(n, np.inf, np.float32)
        self._hi = np.full(n, -np.inf, np.float32)
        self._dropped_min = np.full(n, np.inf, np.float32)  # minimum of values overwritten

    def append(self, samples: np.ndarray, loss: np.ndarray) -> None:
        """One pass: ``loss[i]`` for sample ``samples[i]`` (samples unique)."""
        if not len(samples):
            return
        if self._values is None:
            self._values = np.full((self.n, self.cap), np.nan, np.float32)
        loss = np.asarray(loss, np.float32)
        length = self.length[samples]
        pos = length % self.cap
        full = length >= self.cap
        if full.any():
            old = self._values[samples[full], pos[full]]
            self._dropped_min[samples[full]] = np.fmin(self._dropped_min[samples[full]], old)
        self._values[samples, pos] = loss
        self.length[samples] = length + 1
        self._lo[samples] = np.fmin(self._lo[samples], loss)  # fmin/fmax skip NaN
        self._hi[samples] = np.fmax(self._hi[samples], loss)

    def ordered(self, i: int) -> np.ndarray:
        """Sample ``i``'s stored values, oldest first (at most ``cap``)."""
        t = int(self.length[i])
        if self._values is None or t == 0:
            return np.zeros(0, np.float32)
        row: np.ndarray = self._values[i]
        if t <= self.cap:
            return row[:t].copy()
        start = t % self.cap
        return cast(np.ndarray, np.concatenate([row[start:], row[:start]]))

    def _chronological(self) -> np.ndarray:
        """(n, W) every sample's stored values oldest first, NaN after its last."""
        width = int(min(self.cap, self.length.max(initial=0)))
        if self._values is None or width == 0:
            return np.full((self.n, 0), np.nan, np.float32)
        out = self._values[:, :width].copy()
        for i in np.flatnonzero(self.length > self.cap):  # rings that wrapped: rotate
            out[i] = self.ordered(int(i))
        return out

    def tail_range(self, window: int = I4_WINDOW) -> np.ndarray:
        """Per sample: the trace rescaled to [0, 1] by its minimum and maximum, made
        monotone by a running minimum, its range over the last ``min(window, T)`` passes
        (NaN for a sample without a trace; 0 for a flat one)."""
        values = self._chronological().astype(np.float64)
        out = np.full(self.n, np.nan)
        has = self.length > 0
        if not values.shape[1]:
            return out
        lo, hi = self._lo.astype(np.float64), self._hi.astype(np.float64)
        span = hi - lo
        ok = has & np.isfinite(span) & (span > 0)
        out[has & ~ok] = 0.0
        if not ok.any():
            return out
        rows = np.flatnonzero(ok)
        sc = span[rows, None]
        before = (self._dropped_min[rows].astype(np.float64) - lo[rows]) / span[rows]  # inf: none dropped
        scaled = (values[rows] - lo[rows, None]) / sc
        running = np.fmin.accumulate(np.concatenate([before[:, None], scaled], axis=1), axis=1)[:, 1:]
        stored = np.minimum(self.length[rows], self.cap)  # columns filled, oldest first
        w = np.minimum(window, self.length[rows])
        first = running[np.arange(rows.size), stored - w]
        last = running[np.arange(rows.size), stored - 1]
        out[rows] = np.where(np.isfinite(first), first - last, 0.0)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """What ``cells/<key>.trace.npz`` holds: ``loss`` (n, L) float32, each sample's last
        stored passes oldest first, NaN-padded; ``length`` (n,) passes seen; ``start`` (n,)
        the pass index of ``loss[:, 0]`` (non-zero where the ring dropped older passes)."""
        start = np.maximum(self.length - self.cap, 0)
        return {"loss": self._chronological(), "length": self.length.copy(), "start": start}
