"""The ART adapter: white-box and black-box attacks in one registry."""

from __future__ import annotations

from typing import Any

from advharness.adapters.art.blackbox import BLACKBOX_IMPLS
from advharness.adapters.art.common import CONVERTERS
from advharness.adapters.art.whitebox import WHITEBOX_IMPLS
from advharness.adapters.base import Adapter, Impl
from advharness.models.base import WrappedModel


class ArtAdapter(Adapter):
    """Adapter for ART's evasion attacks on ``PyTorchClassifier``/``TensorFlowV2Classifier``."""

    name = "art"
    package = "adversarial-robustness-toolbox"
    MODULES = {fw: ("art.attacks.evasion", "art.estimators.classification") for fw in ("torch", "tensorflow")}
    #: White-box attacks in adapters/art/whitebox.py, score-/decision-based ones in
    #: adapters/art/blackbox.py (tests/test_blackbox_art.py).
    IMPLS: dict[str, Impl] = {**WHITEBOX_IMPLS, **BLACKBOX_IMPLS}

    def convert(self, model: WrappedModel) -> Any:
        """``PyTorchClassifier`` or ``TensorFlowV2Classifier`` around ``model.counted``."""
        return CONVERTERS[model.framework](model)
