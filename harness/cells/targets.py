"""Target classes for targeted attacks, chosen by the harness and shared by all libraries."""

from __future__ import annotations

from typing import cast

import numpy as np

from advharness.core.errors import HarnessError


def choose_targets(y: np.ndarray, clean_logits: np.ndarray, mode: str, seed: int) -> np.ndarray:
    """One target class per sample, never the true label.

    ``random``: uniform over the other classes, from a generator seeded with ``seed``.
    ``least_likely``: the class with the lowest clean logit (skipping the label).
    """
    n, k = clean_logits.shape
    if mode == "random":
        rng = np.random.default_rng(seed)
        offset = rng.integers(1, k, size=n)
        return cast(np.ndarray, ((y + offset) % k).astype(np.int64))
    if mode == "least_likely":
        logits = clean_logits.astype(np.float64).copy()
        logits[np.arange(n), y] = np.inf
        return cast(np.ndarray, logits.argmin(axis=1).astype(np.int64))
    raise HarnessError(f"unknown target_mode {mode!r}; known: random, least_likely")
