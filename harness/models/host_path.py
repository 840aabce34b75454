"""Path recording on the host (see :mod:`advharness.judging.path`), in NumPy and SciPy: the
recorder's side for a TensorFlow model that runs on the CPU, where the rows are host memory
already and one NumPy call costs far less than one eager TF op (the recorder runs inside the
libraries' compiled functions through a ``tf.py_function``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np

from advharness.judging.attribution import CHUNK_ELEMENTS, pairwise, row_norms, separations
from advharness.judging.path import PathOps

#: Beyond this many originals, separations are bounded through L2 (BLAS) instead of exact.
EXACT_SEPARATION_MAX = 2048


def l2_separation_bound(orig: np.ndarray, norm: str) -> np.ndarray:
    """Lower bounds of each original's distance to its nearest other one, from L2 distances
    (float64 BLAS; for many originals, where the exact pairwise distances cost too much):
    L-inf >= L2 / sqrt(D), L1 >= L2, changed coordinates >= L2^2 / spread^2."""
    o = np.asarray(orig, np.float64).reshape(len(orig), -1)
    sq = (o * o).sum(axis=1)
    out = []
    step = max(1, CHUNK_ELEMENTS // max(1, len(o)))
    for i in range(0, len(o), step):
        d2 = np.maximum(sq[i : i + step, None] + sq[None, :] - 2 * o[i : i + step] @ o.T, 0)
        d2[np.arange(len(d2)), np.arange(i, i + len(d2))] = np.inf
        out.append(d2.min(axis=1))
    l2 = np.sqrt(np.concatenate(out)) * (1 - 1e-6)  # rounding of the expansion
    if norm == "linf":
        return cast(np.ndarray, l2 / np.sqrt(max(o.shape[1], 1)))
    if norm == "l0":
        spread = float(o.max() - o.min()) or 1.0
        return cast(np.ndarray, np.floor(l2**2 / spread**2))
    return cast(np.ndarray, l2)


class HostPathOps(PathOps):
    """The cell's originals ``x`` (model layout) as a host array; ``x`` arguments are
    anything ``np.asarray`` reads without a copy on the host (CPU tensors, arrays)."""

    def __init__(
        self,
        x: np.ndarray,
        norm: str,
        separation: np.ndarray | None = None,
        remember: Callable[[np.ndarray], None] | None = None,
    ) -> None:
        super().__init__(separation, remember)
        self.n = len(x)
        self.shape = tuple(x.shape[1:])
        self.norm = norm
        self._orig = np.ascontiguousarray(x, np.float32).reshape(self.n, -1)
        self._best: np.ndarray | None = None

    def _flat(self, x: Any) -> np.ndarray:
        a = np.asarray(x)
        return a.reshape(len(a), -1).astype(np.float32, copy=False)

    def summarize(self, x: Any, logits: Any, offset: int | None) -> np.ndarray:
        flat = self._flat(x)
        b = len(flat)
        out = np.empty((b, 5 + int(np.shape(logits)[1])), np.float64)
        if offset is None:
            out[:, :2] = np.nan
        else:
            d = row_norms(flat - self._orig[offset : offset + b], self.norm)
            out[:, 0], out[:, 1] = d
        if flat.shape[1]:
            out[:, 2], out[:, 3] = flat.min(axis=1), flat.max(axis=1)
        else:
            out[:, 2:4] = 0.0
        out[:, 4] = flat.sum(axis=1)
        out[:, 5:] = np.asarray(logits)
        return out

    def positional(self, x: Any, offset: int) -> np.ndarray:
        flat = self._flat(x)
        d = row_norms(flat - self._orig[offset : offset + len(flat)], self.norm)
        return np.column_stack(d).astype(np.float64)

    def _pairwise(self, a: np.ndarray) -> np.ndarray:
        """(len(a), n) attribution distances to every original (float64), chunked."""
        return pairwise(a, self._orig, self.norm)

    def nearest(self, x: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = self._pairwise(self._flat(x)[rows])
        if self.n == 1:
            return np.zeros((len(rows), 2), np.int64), np.column_stack([d[:, 0], np.full(len(rows), np.inf)])
        idx = np.argpartition(d, 1, axis=1)[:, :2]
        dist = np.take_along_axis(d, idx, axis=1)
        order = np.argsort(dist, axis=1)
        return np.take_along_axis(idx, order, axis=1), np.take_along_axis(dist, order, axis=1)

    def norms_to(self, x: Any, rows: np.ndarray, samples: np.ndarray, exact: bool) -> np.ndarray:
        a, o = self._flat(x)[rows], self._orig[samples]
        if exact:  # float64: as the referee measures
            a, o = a.astype(np.float64), o.astype(np.float64)
        return row_norms(a - o, self.norm)[1].astype(np.float64)

    def _separations(self) -> np.ndarray:
        if self.n > EXACT_SEPARATION_MAX:
            return l2_separation_bound(self._orig, self.norm)
        return separations(self._orig, self.norm)

    def keep(self, x: Any, rows: np.ndarray, samples: np.ndarray) -> None:
        if self._best is None:
            self._best = self._orig.copy()
        self._best[samples] = self._flat(x)[rows]

    def best(self) -> np.ndarray:
        best = self._orig if self._best is None else self._best
        return best.reshape(self.n, *self.shape).copy()
