"""The commands that read what is stored or installed: ``advharness show``, ``compare``,
``report`` and ``list``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from advharness.cli.terminal import console, print_checks, print_table, run_checks
from advharness.core.errors import HarnessError


def cmd_show(args: argparse.Namespace) -> int:
    from advharness.reporting.results import describe_cell, read_results

    result = read_results(args.results)
    if args.cell:
        print(describe_cell(result.summary, args.cell))
        return 0
    summary = filter_summary(result.summary, attack=args.attack, library=args.library, model=args.model)
    name = result.manifest.get("experiment", {}).get("name", str(args.results))
    checks = run_checks(result, set(summary["cell_key"].astype(str)) if "cell_key" in summary else set())
    print_table(summary, args.format, f"{name}: head-to-head", args.per_seed, checks)
    if args.format == "table":
        print_checks(checks)
    if result.superseded:
        print(
            f"({result.superseded} stored cells superseded by newer ones of the same setting are not shown)",
            file=sys.stderr,
        )
    return 0


def filter_summary(summary: Any, **wanted: list[str] | None) -> Any:
    """Rows whose ``column`` is one of ``wanted[column]`` (None: any); an unknown value is a
    one-line error listing the known ones."""
    for column, values in wanted.items():
        if not values:
            continue
        known = sorted(summary[column].dropna().astype(str).unique()) if column in summary else []
        unknown = [v for v in values if v not in known]
        if unknown:
            raise HarnessError(
                f"--{column} {', '.join(unknown)}: not in these results (known: {', '.join(known)})"
            )
        summary = summary[summary[column].astype(str).isin(values)]
    return summary


def cmd_compare(args: argparse.Namespace) -> int:
    from advharness.reporting.compare import compare_command

    print(compare_command(args.results_a, args.results_b, args.expect, args.metric))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from advharness.reporting.report.page import FIGURES_DIR, LATEX_DIR, MARKDOWN_NAME, write_report

    page = write_report(args.results, args.out, latex=args.latex)
    print(f"report: {page}")
    print(f"markdown: {page.with_name(MARKDOWN_NAME)} (figures in {page.parent / FIGURES_DIR})")
    if args.latex:
        print(f"latex tables: {page.parent / LATEX_DIR}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from advharness.reporting.support import (
        defaults_table,
        framework_lines,
        framework_status,
        support_matrix,
        support_table,
    )

    matrix = support_matrix()
    if args.attack:
        defaults = defaults_table(args.attack)  # an unknown name: one line listing the known
        matrix = matrix[matrix["attack"] == args.attack]
    console().print(support_table(matrix, show_reasons=args.reasons))
    if args.attack:
        console().print(defaults)
    print(framework_lines(framework_status()))
    return 0
