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


def one_line(e: BaseException) -> str:
    """``Type: first non-empty line of the message`` (at most 300 characters)."""
    first = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
    return f"{type(e).__name__}: {first[:300]}" if first else type(e).__name__
