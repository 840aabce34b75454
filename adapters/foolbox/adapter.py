"""The Foolbox adapter: white-box and decision-based attacks in one registry."""

from __future__ import annotations

from typing import Any

from advharness.adapters.base import Adapter, Impl
from advharness.adapters.foolbox.blackbox import BLACKBOX_IMPLS
from advharness.adapters.foolbox.common import CONVERTERS
from advharness.adapters.foolbox.noise import NOISE_IMPLS
from advharness.adapters.foolbox.whitebox import WHITEBOX_IMPLS
from advharness.models.base import WrappedModel


class FoolboxAdapter(Adapter):
    """Foolbox 3.3.4 (one eagerpy implementation for PyTorch and TensorFlow 2)."""

    name = "foolbox"
    package = "foolbox"
    MODULES = {fw: ("foolbox", "eagerpy") for fw in ("torch", "tensorflow")}
    #: White-box attacks in adapters/foolbox/whitebox.py, decision-based ones in
    #: adapters/foolbox/blackbox.py, the random-noise baseline in adapters/foolbox/noise.py.
    IMPLS: dict[str, Impl] = {**WHITEBOX_IMPLS, **BLACKBOX_IMPLS, **NOISE_IMPLS}

    def convert(self, model: WrappedModel) -> Any:
        """``foolbox.PyTorchModel`` / ``foolbox.TensorFlowModel`` around ``model.counted``."""
        return CONVERTERS[model.framework](model)
