"""A detector attached to a model: a per-input score and a threshold set on clean data.

An adversarial input succeeds against a detected model only if it fools the classifier
*and* its score stays at or below the threshold (see :func:`advharness.judging.referee.judge`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from advharness.core.errors import HarnessError


@dataclass
class Detector:
    """``score(x)``: one float per input, higher = more suspicious; inputs scoring above
    ``threshold`` are flagged. ``info`` records how the threshold was set."""

    score: Callable[[np.ndarray], np.ndarray]
    threshold: float
    info: dict[str, Any] = field(default_factory=dict)

    def flag(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each input's score and whether it is flagged."""
        s = np.asarray(self.score(x), dtype=np.float64)
        return s, s > self.threshold


def threshold_for(clean_scores: np.ndarray, fpr: float) -> float:
    """The smallest threshold that flags at most ``fpr`` of ``clean_scores`` (an input is
    flagged when its score is strictly above it)."""
    s = np.sort(np.asarray(clean_scores, dtype=np.float64))
    if not len(s) or not np.isfinite(s).all():
        raise HarnessError("detector calibration needs finite scores on at least one clean input")
    allowed = int(np.floor(fpr * len(s)))  # clean inputs that may score above the threshold
    return float(s[len(s) - 1 - allowed])
