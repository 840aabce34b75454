"""Library adapters behind one contract (see :mod:`advharness.adapters.base`).

The registry is an explicit dict; adapter modules import their library lazily, inside the
functions that need it, so importing this package is cheap.
"""

from __future__ import annotations

from advharness.adapters.art.adapter import ArtAdapter
from advharness.adapters.base import Adapter, AttackOutput, AttackRequest, LibraryCall
from advharness.adapters.cleverhans.adapter import CleverHansAdapter
from advharness.adapters.foolbox.adapter import FoolboxAdapter
from advharness.core.errors import HarnessError
from advharness.core.imports import resolve_factory

ADAPTERS: dict[str, type[Adapter]] = {
    "art": ArtAdapter,
    "foolbox": FoolboxAdapter,
    "cleverhans": CleverHansAdapter,
}


def get_adapter(name: str) -> Adapter:
    """Instantiate the adapter for library ``name``: a built-in name, or ``module:Class`` for
    an :class:`Adapter` subclass of your own (one-line error otherwise)."""
    if name in ADAPTERS:
        return ADAPTERS[name]()
    if ":" in name:
        return load_adapter_class(name)()
    raise HarnessError(
        f"unknown library {name!r}; known libraries: {', '.join(ADAPTERS)} "
        "(or module:Class for an Adapter subclass)"
    )


def load_adapter_class(path: str) -> type[Adapter]:
    """The :class:`Adapter` subclass named ``module:Class``."""
    try:
        cls = resolve_factory(path)
    except HarnessError as e:
        raise HarnessError(f"library {path!r}: {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise HarnessError(f"library {path!r} is not an Adapter subclass")
    return cls


__all__ = ["ADAPTERS", "Adapter", "AttackOutput", "AttackRequest", "LibraryCall", "get_adapter"]
