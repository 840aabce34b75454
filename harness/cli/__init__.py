"""Command line: ``advharness run|harden|show|compare|report|list`` (also ``python -m advharness``).

The parser is in :mod:`~advharness.cli.parser`, the commands that run cells (``run``,
``harden``) in :mod:`~advharness.cli.running`, those that read results or the installation
(``show``, ``compare``, ``report``, ``list``) in :mod:`~advharness.cli.results`, and what
they share on the terminal in :mod:`~advharness.cli.terminal`.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Callable, Sequence

from advharness.cli.parser import build_parser
from advharness.cli.results import filter_summary
from advharness.cli.terminal import TerminalFilter, print_checks, print_table, run_checks
from advharness.core.errors import HarnessError
from advharness.core.interrupts import RunInterrupted

__all__ = [
    "TerminalFilter",
    "build_parser",
    "filter_summary",
    "main",
    "print_checks",
    "print_table",
    "resume_command",
    "run_checks",
]


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.command_line = shlex.join(sys.argv if argv is None else ["advharness", *argv])
    if extra:  # overrides may come after options: `run exp.yaml --dry-run a.b=1`
        if args.command != "run" or any("=" not in e or e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    level = logging.INFO if args.verbose else logging.WARNING
    before = list(logging.getLogger().handlers)  # an embedding program's (pytest's): kept
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # the run's log file gets INFO, not the terminal; but progress lines (e.g. a recipe trained
    # on first use) reach the terminal whatever the level, and the libraries' INFO lines
    # (ART's own "success rate", which the referee's may contradict) never do
    logging.getLogger("advharness.progress").setLevel(logging.INFO)
    for handler in logging.getLogger().handlers:
        ours = [f for f in handler.filters if isinstance(f, TerminalFilter)]
        if handler in before and not ours:
            handler.setLevel(level)
            continue
        handler.setLevel(logging.INFO)
        for f in ours:  # main() run again in this process
            handler.removeFilter(f)
        handler.addFilter(TerminalFilter(level))
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except HarnessError as e:
        print(f"advharness: error: {e}", file=sys.stderr)
        return 2
    except RunInterrupted as e:
        print(f"advharness: {e}; resume with: {resume_command(argv)}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("advharness: interrupted", file=sys.stderr)
        return 130


def resume_command(argv: Sequence[str] | None) -> str:
    """The command line that continues an interrupted run: the same one (stored cells are
    skipped), as the user can paste it."""
    import shlex
    import shutil

    prog = sys.argv[0] if argv is None else "advharness"
    if prog.endswith("__main__.py"):
        head = [sys.executable, "-m", "advharness"]
    else:  # the bare name where PATH finds this very program, else its full path
        name = os.path.basename(prog) or "advharness"
        found = shutil.which(name)
        same = found is not None and os.path.exists(prog) and os.path.samefile(found, prog)
        head = [name if same or not os.path.exists(prog) else os.path.abspath(prog)]
    return shlex.join([*head, *(sys.argv[1:] if argv is None else argv)])
