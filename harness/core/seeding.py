"""Seed every random number generator the three libraries draw from; deterministic runs.

ART draws from NumPy's global generator, Foolbox and CleverHans from torch / TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy, and torch / TensorFlow when they are loaded."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)
    if "tensorflow" in sys.modules:
        sys.modules["tensorflow"].random.set_seed(seed)
    if "keras" in sys.modules:
        sys.modules["keras"].utils.set_random_seed(seed % 2**32)


@contextmanager
def deterministic(framework: str, seed: int, *, restore_generators: bool = False) -> Iterator[None]:
    """Run ``framework``'s ("torch" or "tensorflow") code reproducibly: deterministic kernels
    on, and every generator seeded with ``seed`` (:func:`seed_everything`).

    On exit the deterministic-kernel setting is restored and, with ``restore_generators``, the
    states of Python's, NumPy's and torch's generators too (a call that trains leaves its
    caller's random streams where they were); TensorFlow's global seed stays set.
    """
    saved = _generator_states() if restore_generators else None
    with _deterministic_kernels(framework):
        try:
            seed_everything(seed)
            yield
        finally:
            if saved is not None:
                _set_generator_states(saved)


@contextmanager
def _deterministic_kernels(framework: str) -> Iterator[None]:
    """``framework``'s deterministic kernels on inside, its previous setting restored after."""
    if framework == "torch":
        import torch

        prev = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        )
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
    elif framework == "tensorflow":
        import tensorflow as tf
        from tensorflow.python.framework import config as tf_config

        was = tf_config.is_op_determinism_enabled()
        tf.config.experimental.enable_op_determinism()
        try:
            yield
        finally:
            if not was:
                tf_config.disable_op_determinism()
    else:
        raise ValueError(f"unknown framework {framework!r}")


def _generator_states() -> tuple[Any, Any, Any]:
    torch = sys.modules.get("torch")
    return random.getstate(), np.random.get_state(), torch.get_rng_state() if torch else None


def _set_generator_states(states: tuple[Any, Any, Any]) -> None:
    py, npy, torch_state = states
    random.setstate(py)
    np.random.set_state(npy)
    if torch_state is not None:
        sys.modules["torch"].set_rng_state(torch_state)


def derive_seed(base: int, *parts: object) -> int:
    """A stable per-cell seed from the experiment seed and the cell's identity."""
    h = hashlib.sha256(repr((base, *parts)).encode()).digest()
    return int.from_bytes(h[:4], "little")


def content_key(content: Mapping[str, object]) -> str:
    """A short stable hash of a JSON-able description (a cell's content key)."""
    text = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]
