"""Core helpers: one-line exception text, package versions, seeding."""

from __future__ import annotations

from advharness.core.errors import first_line, one_line


def test_one_line_is_the_type_and_the_first_non_empty_line() -> None:
    assert one_line(RuntimeError("\n  boom  \nsecond line")) == "RuntimeError: boom"
    assert one_line(KeyError()) == "KeyError"
    assert one_line(ValueError("x" * 400)) == "ValueError: " + "x" * 300
    assert one_line(ValueError("x" * 400), 500) == "ValueError: " + "x" * 400
    assert first_line("\n\n") == ""
