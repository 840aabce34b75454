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


def first_line(text: str, limit: int = 300) -> str:
    """The first non-empty line of ``text``, stripped, cut to ``limit`` characters ("" if none)."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:limit]


def one_line(e: BaseException, limit: int = 300) -> str:
    """``Type: first non-empty line of the message`` (the message cut to ``limit`` characters),
    or just ``Type`` for an empty message."""
    first = first_line(str(e), limit)
    return f"{type(e).__name__}: {first}" if first else type(e).__name__
