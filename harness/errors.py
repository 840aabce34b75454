"""Errors the harness reports to users as one line."""

from __future__ import annotations


class HarnessError(ValueError):
    """A problem with the user's input: printed as one line by the CLI, no traceback."""


class Unsupported(Exception):
    """An (attack, library, framework, norm, targeted) combination a library lacks or breaks.

    Raised by adapters; the runner turns it into an ``unsupported`` row with ``reason``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
