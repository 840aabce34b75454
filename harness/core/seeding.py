"""Seed every random number generator the three libraries draw from.

ART draws from NumPy's global generator, Foolbox and CleverHans from torch / TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections.abc import Mapping

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


def derive_seed(base: int, *parts: object) -> int:
    """A stable per-cell seed from the experiment seed and the cell's identity."""
    h = hashlib.sha256(repr((base, *parts)).encode()).digest()
    return int.from_bytes(h[:4], "little")


def content_key(content: Mapping[str, object]) -> str:
    """A short stable hash of a JSON-able description (a cell's content key)."""
    text = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]
