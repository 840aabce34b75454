"""Command line: ``advharness run|show|list`` (also ``python -m harness``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from harness.errors import HarnessError


def _console() -> Any:
    """A rich console; wide when the output is not a terminal (files, pipes, CI logs)."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 150)


def _cmd_run(args: argparse.Namespace) -> int:
    from harness.experiment import load_experiment
    from harness.runner import run_experiment
    from harness.tables import render

    exp = load_experiment(args.experiment)
    result = run_experiment(exp, args.results_dir, out_dir=args.out, progress=not args.no_progress)
    _console().print(render(result.summary, title=f"{exp.name}: head-to-head"))
    print(f"results: {result.path}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from harness.results import read_results
    from harness.tables import render

    result = read_results(args.results)
    name = result.manifest.get("experiment", {}).get("name", str(args.results))
    _console().print(render(result.summary, title=f"{name}: head-to-head"))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from harness.support import support_matrix, support_table

    matrix = support_matrix()
    if args.attack:
        matrix = matrix[matrix["attack"] == args.attack]
        if matrix.empty:
            raise HarnessError(f"unknown attack {args.attack!r}")
    _console().print(support_table(matrix, show_reasons=args.reasons))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="advharness",
        description="Run the same attacks from ART, Foolbox and CleverHans; referee them alike.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run an experiment file and print the head-to-head table")
    r.add_argument("experiment", help="experiment YAML file")
    r.add_argument("--results-dir", default="results", help="where runs land (default: results)")
    r.add_argument("--out", default=None, help="exact output directory (default: <results-dir>/<name>)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=_cmd_run)
    s = sub.add_parser("show", help="print the head-to-head table of a results directory")
    s.add_argument("results", help="results directory (e.g. results/quickstart)")
    s.set_defaults(func=_cmd_show)
    ls = sub.add_parser("list", help="print the support matrix (attack x library x framework)")
    ls.add_argument("--attack", default=None, help="only this attack")
    ls.add_argument("--reasons", action="store_true", help="list why combinations are unsupported")
    ls.set_defaults(func=_cmd_list)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except HarnessError as e:
        print(f"advharness: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("advharness: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
