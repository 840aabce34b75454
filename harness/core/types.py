"""The shared vocabulary: layouts, output kinds, frameworks, threat models."""

from __future__ import annotations

from typing import Literal

Layout = Literal["NCHW", "NHWC", "flat"]


Outputs = Literal["logits", "probabilities"]


Framework = Literal["torch", "tensorflow"]


#: What a cell's attacker may see: gradients, scores only, or the top-1 label only.
ThreatModel = Literal["white-box", "score-based", "decision-based"]


THREAT_MODELS: tuple[ThreatModel, ...] = ("white-box", "score-based", "decision-based")
