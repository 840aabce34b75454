"""TensorFlow side of white-box path recording (see :mod:`advharness.judging.path`): the
originals and the best rows seen stay on TensorFlow's device; per forward pass one small
host copy (distances, row statistics, logits). Runs eagerly: called directly by an eager
forward pass, and through a ``tf.py_function`` from a compiled one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from advharness.judging.path import PathOps
from advharness.judging.referee import L0_ATOL

#: Element budget of one chunk of a pairwise distance computation.
_CHUNK_ELEMENTS = 1 << 23
#: Beyond this many originals, separations are bounded through L2 (BLAS) instead of exact.
EXACT_SEPARATION_MAX = 2048


def row_norms(delta: tf.Tensor, norm: str) -> tuple[tf.Tensor, tf.Tensor]:
    """Attribution distance and spec norm of each row of ``delta`` (B, D)."""
    if norm == "l2":
        d = tf.sqrt(tf.reduce_sum(delta * delta, axis=1))
        return d, d
    if norm == "linf":
        d = tf.reduce_max(tf.abs(delta), axis=1) if delta.shape[1] else tf.zeros(tf.shape(delta)[0])
        return d, d
    if norm == "l1":
        d = tf.reduce_sum(tf.abs(delta), axis=1)
        return d, d
    changed = tf.reduce_sum(tf.cast(tf.not_equal(delta, 0), delta.dtype), axis=1)
    return changed, tf.reduce_sum(tf.cast(tf.abs(delta) > L0_ATOL, delta.dtype), axis=1)


class TFPathOps(PathOps):
    """The cell's originals ``x`` (model layout); distances in ``norm``. ``separation``:
    precomputed separations (cached by the model per batch and norm)."""

    def __init__(
        self,
        x: np.ndarray,
        norm: str,
        separation: np.ndarray | None = None,
        remember: Callable[[np.ndarray], None] | None = None,
    ) -> None:
        super().__init__(separation, remember)
        self.n = len(x)
        self.shape = x.shape[1:]
        self.norm = norm
        self._orig = tf.constant(np.ascontiguousarray(x, np.float32).reshape(self.n, -1))
        self._best: tf.Variable | None = None

    @staticmethod
    def _flat(x: Any) -> tf.Tensor:
        x = tf.stop_gradient(tf.convert_to_tensor(x))
        return tf.cast(tf.reshape(x, (tf.shape(x)[0], -1)), tf.float32)

    def summarize(self, x: Any, logits: Any, offset: int | None) -> np.ndarray:
        flat = self._flat(x)
        b = int(flat.shape[0])
        if offset is None:
            dist = tf.fill((b, 2), float("nan"))
        else:
            dist = tf.stack(row_norms(flat - self._orig[offset : offset + b], self.norm), axis=1)
        stats = tf.stack(
            [tf.reduce_min(flat, axis=1), tf.reduce_max(flat, axis=1), tf.reduce_sum(flat, axis=1)], axis=1
        )
        out = tf.concat([dist, stats, tf.cast(tf.stop_gradient(logits), tf.float32)], axis=1)
        return np.asarray(out.numpy(), np.float64)

    def positional(self, x: Any, offset: int) -> np.ndarray:
        flat = self._flat(x)
        d = row_norms(flat - self._orig[offset : offset + int(flat.shape[0])], self.norm)
        return np.asarray(tf.stack(d, axis=1).numpy(), np.float64)

    def _pairwise(self, a: tf.Tensor) -> tf.Tensor:
        """(len(a), n) attribution distances to every original, chunked."""
        dim = max(1, int(self._orig.shape[1]))
        step = max(1, _CHUNK_ELEMENTS // max(1, int(a.shape[0]) * dim))
        parts = []
        for j in range(0, self.n, step):
            delta = a[:, None, :] - self._orig[None, j : j + step, :]
            b, c = tf.shape(delta)[0], tf.shape(delta)[1]
            flat = tf.reshape(delta, (b * c, -1))
            parts.append(tf.reshape(row_norms(flat, self.norm)[0], (b, c)))
        return tf.concat(parts, axis=1)

    def nearest(self, x: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = tf.gather(self._flat(x), rows)
        d = self._pairwise(a)
        if self.n == 1:
            idx = np.zeros((len(rows), 2), np.int64)
            return idx, np.column_stack([d.numpy()[:, 0], np.full(len(rows), np.inf)])
        neg, idx = tf.math.top_k(-d, k=2)
        return idx.numpy().astype(np.int64), -neg.numpy().astype(np.float64)

    def norms_to(self, x: Any, rows: np.ndarray, samples: np.ndarray, exact: bool) -> np.ndarray:
        a = tf.gather(self._flat(x), rows)
        o = tf.gather(self._orig, samples)
        if exact:  # float64: as the referee measures
            a, o = tf.cast(a, tf.float64), tf.cast(o, tf.float64)
        return np.asarray(row_norms(a - o, self.norm)[1].numpy(), np.float64)

    def _separations(self) -> np.ndarray:
        if self.n > EXACT_SEPARATION_MAX:
            return self._l2_bound()
        dim = max(1, int(self._orig.shape[1]))
        step = max(1, int(np.sqrt(_CHUNK_ELEMENTS / dim)))
        out = []
        for i in range(0, self.n, step):
            d = self._pairwise(self._orig[i : i + step]).numpy().astype(np.float64)
            d[np.arange(len(d)), np.arange(i, i + len(d))] = np.inf
            out.append(d.min(axis=1))
        return np.concatenate(out)

    def _l2_bound(self) -> np.ndarray:
        """Lower bounds of the separations from L2 distances (float64 BLAS, on the host):
        L-inf >= L2 / sqrt(D), L1 >= L2, changed coordinates >= L2^2 / spread^2."""
        o = self._orig.numpy().astype(np.float64)
        sq = (o * o).sum(axis=1)
        out = []
        step = max(1, _CHUNK_ELEMENTS // max(1, self.n))
        for i in range(0, self.n, step):
            d2 = np.maximum(sq[i : i + step, None] + sq[None, :] - 2 * o[i : i + step] @ o.T, 0)
            d2[np.arange(len(d2)), np.arange(i, i + len(d2))] = np.inf
            out.append(d2.min(axis=1))
        l2 = np.sqrt(np.concatenate(out)) * (1 - 1e-6)
        if self.norm == "linf":
            return l2 / np.sqrt(o.shape[1])
        if self.norm == "l0":
            spread = float(o.max() - o.min()) or 1.0
            return np.floor(l2**2 / spread**2)
        return l2

    def keep(self, x: Any, rows: np.ndarray, samples: np.ndarray) -> None:
        if self._best is None:
            self._best = tf.Variable(self._orig, trainable=False)
        self._best.scatter_nd_update(
            tf.constant(np.asarray(samples, np.int64)[:, None]), tf.gather(self._flat(x), rows)
        )

    def best(self) -> np.ndarray:
        best = self._orig if self._best is None else self._best
        return np.asarray(best.numpy()).reshape(self.n, *self.shape).copy()
