"""Library adapters behind one contract (see :mod:`adapters.base`).

The registry is an explicit dict; adapter modules import their library lazily, inside the
functions that need it, so importing this package is cheap.
"""

from __future__ import annotations

from adapters.art import ArtAdapter
from adapters.base import Adapter, AttackOutput, AttackRequest, LibraryCall
from adapters.cleverhans import CleverHansAdapter
from adapters.foolbox import FoolboxAdapter
from harness.errors import HarnessError

ADAPTERS: dict[str, type[Adapter]] = {
    "art": ArtAdapter,
    "foolbox": FoolboxAdapter,
    "cleverhans": CleverHansAdapter,
}


def get_adapter(name: str) -> Adapter:
    """Instantiate the adapter for library ``name`` (one-line error for unknown names)."""
    try:
        return ADAPTERS[name]()
    except KeyError:
        raise HarnessError(
            f"unknown library {name!r}; known libraries: {', '.join(ADAPTERS)}"
        ) from None


__all__ = ["ADAPTERS", "Adapter", "AttackOutput", "AttackRequest", "LibraryCall", "get_adapter"]
