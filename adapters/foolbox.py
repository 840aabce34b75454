"""foolbox adapter (being written)."""

from __future__ import annotations

from typing import Any

from adapters.base import Adapter, Impl
from harness.models import WrappedModel


class FoolboxAdapter(Adapter):
    name = "foolbox"
    package = "foolbox"
    IMPLS: dict[str, Impl] = {}

    def convert(self, model: WrappedModel) -> Any:
        raise NotImplementedError
