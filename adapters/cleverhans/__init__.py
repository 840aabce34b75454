"""CleverHans adapter (``CleverHansAdapter`` in :mod:`advharness.adapters.cleverhans.adapter`)."""

from advharness.adapters.cleverhans.adapter import CleverHansAdapter

__all__ = ["CleverHansAdapter"]
