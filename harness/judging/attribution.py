"""Which original a queried row belongs to: the rule white-box path recording
(:mod:`advharness.judging.path`) and batched black-box ledgers (:mod:`advharness.judging.batched`)
share, and its NumPy distances.

A row belongs to the original nearest to it in the spec's norm (as AttackBench attributes
queries); L0 counts changed coordinates. Two tests decide it without a guess:

* :func:`confirmed`, the *chunk rule*: when the rows are (likely) a contiguous chunk of the
  originals, row ``i`` is confirmed for original ``p = offset + i`` when its distance ``d`` to
  ``p`` satisfies ``d + max(d, reach) < sep_p``, ``sep_p`` being ``p``'s distance to its
  nearest other original: by the triangle inequality every other original is then farther
  than ``max(d, reach)`` from the row, so ``p`` is its unique nearest original and, with a
  ``reach``, the only one within it. Proven equal to the search below, at O(D) per row.
* :func:`unique`, the *search*: the two nearest originals of a row; it is attributed when
  the second is farther than ``max(d1 (1 + SEP_MARGIN) + tiny, reach)``, else it is
  *ambiguous* (a second original within the margin).

``reach`` is 0 for the nearest-original rule; a batched black-box ledger of a fixed-budget
cell uses the eps-ball's radius, since every query a library makes for a sample lies within
eps of it: a row with two originals within eps could belong to either.
"""

from __future__ import annotations

from typing import cast

import numpy as np

from advharness.judging.referee import L0_ATOL

#: Relative margin on float32 distances (confirmation and ties).
SEP_MARGIN = 1e-5
#: Element budget of one chunk of a pairwise distance computation (float64).
CHUNK_ELEMENTS = 1 << 22
METRICS = {"l0": "hamming", "l1": "cityblock", "l2": "euclidean", "linf": "chebyshev"}


def confirmed(
    pos_dist: np.ndarray, separation: np.ndarray, finite: np.ndarray, reach: float = 0.0
) -> np.ndarray:
    """The chunk rule: rows whose positional original (at ``pos_dist``, with ``separation``
    from its nearest other original) is provably the only original within
    ``max(pos_dist, reach)`` of them."""
    return np.asarray(finite & (pos_dist + np.maximum(pos_dist, reach) < separation * (1 - SEP_MARGIN)))


def unique(d1: np.ndarray, d2: np.ndarray, reach: float = 0.0) -> np.ndarray:
    """The search: rows whose second-nearest original (``d2``) lies beyond the margin of the
    nearest (``d1``): attributed; the others are ambiguous."""
    return np.asarray(d2 > np.maximum(d1 * (1 + SEP_MARGIN) + SEP_MARGIN * 1e-3, reach))


def margin(d1: np.ndarray, reach: float = 0.0) -> np.ndarray:
    """Per row, the distance within which an original is a candidate (:func:`unique`'s)."""
    return np.asarray(np.maximum(d1 * (1 + SEP_MARGIN) + SEP_MARGIN * 1e-3, reach))


def row_norms(delta: np.ndarray, norm: str) -> tuple[np.ndarray, np.ndarray]:
    """Attribution distance and spec norm of each row of ``delta`` (B, D), float32."""
    if norm == "l2":
        d = np.sqrt(np.einsum("ij,ij->i", delta, delta))
        return d, d
    if norm == "linf":
        d = np.abs(delta).max(axis=1) if delta.shape[1] else np.zeros(len(delta), delta.dtype)
        return d, d
    if norm == "l1":
        d = np.abs(delta).sum(axis=1)
        return d, d
    changed = np.count_nonzero(delta, axis=1).astype(delta.dtype)
    return changed, (np.abs(delta) > L0_ATOL).sum(axis=1).astype(delta.dtype)


def pairwise(a: np.ndarray, orig: np.ndarray, norm: str) -> np.ndarray:
    """(len(a), len(orig)) attribution distances of flat rows ``a`` to flat originals
    ``orig`` (float64), chunked."""
    from scipy.spatial.distance import cdist

    scale = orig.shape[1] if norm == "l0" else 1  # hamming is a fraction
    step = max(1, CHUNK_ELEMENTS // max(1, len(orig)))
    if not len(a):
        return np.zeros((0, len(orig)))
    return np.concatenate(
        [cdist(a[i : i + step], orig, METRICS[norm]) * scale for i in range(0, len(a), step)]
    )


def separations(orig: np.ndarray, norm: str) -> np.ndarray:
    """Each flat original's attribution distance to its nearest other one (inf if alone)."""
    n = len(orig)
    if n < 2:
        return np.full(n, np.inf)
    out = []
    step = max(1, CHUNK_ELEMENTS // n)
    for i in range(0, n, step):
        d = pairwise(orig[i : i + step], orig, norm)
        d[np.arange(len(d)), np.arange(i, i + len(d))] = np.inf
        out.append(d.min(axis=1))
    return cast(np.ndarray, np.concatenate(out))
