"""TensorFlow side of white-box path recording (see :mod:`advharness.judging.path`).

Called directly by an eager forward pass, and through a ``tf.py_function`` from a compiled
one; either way it runs eagerly, and it never calls a ``tf.function`` (inside a
``py_function`` that deadlocks TF with one inter-op thread, as the workers run it).

On a CPU-only TensorFlow the rows are host memory already: NumPy does the work
(:class:`~advharness.models.host_path.HostPathOps`; an eager TF op costs ~50-100 us, a NumPy
call a few). With a GPU the originals and the best rows stay on it and eager TF ops compute
the few numbers per row that come back to the host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from advharness.judging.referee import L0_ATOL
from advharness.models.host_path import HostPathOps

#: Element budget of one chunk of a pairwise distance computation.
_CHUNK_ELEMENTS = 1 << 23


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


class TFPathOps(HostPathOps):
    """The cell's originals ``x`` (model layout); distances in ``norm``. ``on_host``: work
    in NumPy (default: when TensorFlow sees no GPU); else in eager TF ops on its device."""

    def __init__(
        self,
        x: np.ndarray,
        norm: str,
        separation: np.ndarray | None = None,
        remember: Callable[[np.ndarray], None] | None = None,
        on_host: bool | None = None,
    ) -> None:
        super().__init__(x, norm, separation, remember)
        self.on_host = not tf.config.list_logical_devices("GPU") if on_host is None else on_host
        self._orig_t = None if self.on_host else tf.constant(self._orig)
        self._best_t: tf.Variable | None = None

    @staticmethod
    def _tflat(x: Any) -> tf.Tensor:
        x = tf.stop_gradient(tf.convert_to_tensor(x))  # not recorded by a tape watching x
        return tf.cast(tf.reshape(x, (tf.shape(x)[0], -1)), tf.float32)

    def summarize(self, x: Any, logits: Any, offset: int | None) -> np.ndarray:
        if self._orig_t is None:
            return super().summarize(x, logits, offset)
        flat = self._tflat(x)
        b = int(flat.shape[0])
        if offset is None:
            dist = tf.fill((b, 2), float("nan"))
        else:
            dist = tf.stack(row_norms(flat - self._orig_t[offset : offset + b], self.norm), axis=1)
        stats = tf.stack(
            [tf.reduce_min(flat, axis=1), tf.reduce_max(flat, axis=1), tf.reduce_sum(flat, axis=1)], axis=1
        )
        out = tf.concat([dist, stats, tf.cast(logits, tf.float32)], axis=1)
        return np.asarray(out.numpy(), np.float64)

    def positional(self, x: Any, offset: int) -> np.ndarray:
        if self._orig_t is None:
            return super().positional(x, offset)
        flat = self._tflat(x)
        d = row_norms(flat - self._orig_t[offset : offset + int(flat.shape[0])], self.norm)
        return np.asarray(tf.stack(d, axis=1).numpy(), np.float64)

    def nearest(self, x: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._orig_t is None:
            return super().nearest(x, rows)
        a = tf.gather(self._tflat(x), rows)
        step = max(1, _CHUNK_ELEMENTS // max(1, len(rows) * int(self._orig_t.shape[1])))
        parts = []
        for j in range(0, self.n, step):
            delta = a[:, None, :] - self._orig_t[None, j : j + step, :]
            b, c = tf.shape(delta)[0], tf.shape(delta)[1]
            parts.append(tf.reshape(row_norms(tf.reshape(delta, (b * c, -1)), self.norm)[0], (b, c)))
        d = tf.concat(parts, axis=1)
        if self.n == 1:
            return np.zeros((len(rows), 2), np.int64), np.column_stack(
                [d.numpy()[:, 0], np.full(len(rows), np.inf)]
            )
        neg, idx = tf.math.top_k(-d, k=2)
        return idx.numpy().astype(np.int64), -neg.numpy().astype(np.float64)

    def norms_to(self, x: Any, rows: np.ndarray, samples: np.ndarray, exact: bool) -> np.ndarray:
        if self._orig_t is None:
            return super().norms_to(x, rows, samples, exact)
        a = tf.gather(self._tflat(x), rows)
        o = tf.gather(self._orig_t, samples)
        if exact:  # float64: as the referee measures
            a, o = tf.cast(a, tf.float64), tf.cast(o, tf.float64)
        return np.asarray(row_norms(a - o, self.norm)[1].numpy(), np.float64)

    def keep(self, x: Any, rows: np.ndarray, samples: np.ndarray) -> None:
        if self._orig_t is None:
            super().keep(x, rows, samples)
            return
        if self._best_t is None:
            self._best_t = tf.Variable(self._orig_t, trainable=False)
        self._best_t.scatter_nd_update(
            tf.constant(np.asarray(samples, np.int64)[:, None]), tf.gather(self._tflat(x), rows)
        )

    def best(self) -> np.ndarray:
        if self._best_t is None:
            return super().best()
        return np.asarray(self._best_t.numpy()).reshape(self.n, *self.shape).copy()
