"""CleverHans 4.0.0 adapter: function-style attacks on the wrapped model's counted callable.

CleverHans attacks are plain functions of ``model_fn(x) -> logits``. The ``model_fn`` is
``model.counted``, so every query is counted. Every parameter that affects the result is
passed explicitly (CleverHans does not clip unless ``clip_min``/``clip_max`` are given, and its
torch and tf2 defaults differ), ``library_options["cleverhans"]`` is merged last, and the
whole call is recorded in a :class:`LibraryCall`. CleverHans v4 has no DeepFool, JSMA, EAD,
APGD, FMN or DDN; those are absent from ``IMPLS`` so the base class reports them.
"""

from __future__ import annotations

from typing import Any

from advharness.adapters.base import Adapter, Impl
from advharness.adapters.cleverhans.blackbox import BLACKBOX_IMPLS
from advharness.adapters.cleverhans.whitebox import WHITEBOX_IMPLS
from advharness.models.base import WrappedModel


class CleverHansAdapter(Adapter):
    """CleverHans 4.0.0: torch and tf2 function attacks (FGM, BIM, PGD, MIM, C&W L2), plus
    the black-box torch SPSA (score-based) and HopSkipJump (decision-based)."""

    name = "cleverhans"
    package = "cleverhans"
    MODULES = {
        "torch": ("cleverhans.torch.attacks.projected_gradient_descent",),
        "tensorflow": ("cleverhans.tf2.attacks.projected_gradient_descent",),
    }
    #: White-box attacks in adapters/cleverhans/whitebox.py, SPSA and HopSkipJump in
    #: adapters/cleverhans/blackbox.py.
    IMPLS: dict[str, Impl] = {**WHITEBOX_IMPLS, **BLACKBOX_IMPLS}

    def convert(self, model: WrappedModel) -> Any:
        """CleverHans' ``model_fn`` is the counted callable (torch module / TF callable); the
        attacks take it through ``common.model_fn``, the same cached form."""
        return model.counted
