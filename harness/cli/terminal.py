"""What the commands share on the terminal: the log filter, the console, wide pandas
printing, the head-to-head table and the sanity checks' flags."""

from __future__ import annotations

import logging
import sys
from typing import Any


class TerminalFilter(logging.Filter):
    """What the terminal shows: records at ``level`` and up, but the libraries' below WARNING
    never, and ``advharness.progress`` always."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "advharness.progress":
            return True
        own = record.name.startswith("advharness")
        return record.levelno >= self.level and (own or record.levelno >= logging.WARNING)


def console() -> Any:
    """A rich console; wide when the output is not a terminal (files, pipes, CI logs)."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 150)


def wide() -> Any:
    """pandas options for printing wide tables whole."""
    import pandas as pd

    return pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 60)


def run_checks(result: Any, shown: set[str] | None = None) -> Any:
    """The sanity checks of a run (:func:`advharness.analytics.sanity_checks`, with its
    model probes when it has them), only the flags on or against a ``shown`` cell (None: all)."""
    from advharness.analytics.checks import sanity_checks

    checks = sanity_checks(result.summary, result.records, getattr(result, "probes", None))
    if shown is None:
        return checks
    keys = checks["cell_keys"] + checks["reference_keys"]
    return checks[keys.map(lambda k: bool(set(k) & shown)).astype(bool)]


def print_checks(checks: Any) -> None:
    """The sanity checks' flags after the table (nothing when none fired)."""
    from advharness.reporting.render import sanity_list

    text = sanity_list(checks)
    if text:
        console().print(text, markup=False, highlight=False)


def print_table(summary: Any, fmt: str, title: str, per_seed: bool, checks: Any = None) -> None:
    from advharness.reporting import render

    if fmt == "table":
        console().print(render.render(summary, title=title, per_seed=per_seed, checks=checks))
        return
    writer = {"csv": render.to_csv, "md": render.to_markdown, "latex": render.to_latex}[fmt]
    sys.stdout.write(writer(summary, per_seed, checks))
