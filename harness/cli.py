"""Command line: ``advharness run|harden|show|compare|report|list`` (also ``python -m advharness``)."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import Any

from advharness.core.errors import HarnessError
from advharness.core.interrupts import RunInterrupted


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


def _console() -> Any:
    """A rich console; wide when the output is not a terminal (files, pipes, CI logs)."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 150)


def _cmd_run(args: argparse.Namespace) -> int:
    from advharness.config.experiment import load_experiment
    from advharness.execution.orchestrate import plan_table, run_experiment

    exp = load_experiment(args.experiment, args.overrides, quick=args.quick)
    backend = "ray" if args.ray_address else args.backend
    if args.dry_run:
        cells = plan_table(exp, args.results_dir, args.out, args.retry_failed)
        with _wide():
            print(cells.to_string(index=False))
        todo = int((cells["will_run"]).sum())
        print(f"{len(cells)} cells, {todo} to run on backend {backend!r} (dry run: nothing ran)")
        return 0
    result = run_experiment(
        exp,
        args.results_dir,
        out_dir=args.out,
        progress=not args.no_progress,
        backend=backend,
        workers=args.workers,
        ray_address=args.ray_address,
        retry_failed=args.retry_failed,
        command=args.command_line,
        overrides=args.overrides,
    )
    checks = run_checks(result)
    print_table(result.summary, "table", f"{exp.name}: head-to-head", per_seed=False, checks=checks)
    print_checks(checks)
    if exp.expect:  # stored as expectations.csv by the run
        from advharness.reporting.compare import expectations_table, expectations_text

        print(expectations_text(expectations_table(result, exp.expect), exp.name, exp.deviations))
    print(f"results: {result.path}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from advharness.reporting.compare import compare_command

    print(compare_command(args.results_a, args.results_b, args.expect))
    return 0


def _cmd_harden(args: argparse.Namespace) -> int:
    from advharness.config.experiment import load_experiment
    from advharness.execution.harden import harden, rounds_table

    exp = load_experiment(args.experiment, args.overrides, quick=args.quick)
    h = harden(
        exp,
        target=args.target,
        results_root=args.results_dir,
        out_dir=args.out,
        progress=not args.no_progress,
        backend="ray" if args.ray_address else args.backend,
        workers=args.workers,
        ray_address=args.ray_address,
        retry_failed=args.retry_failed,
        command=args.command_line,
        overrides=args.overrides,
    )
    with _wide():
        print(f"{exp.name}: hardening rounds")
        print(rounds_table(h).to_string(index=False))
        print(f"\n{exp.name}: before / after (success rate within eps [95% interval])")
        print(h.table.to_string())
    checks = run_checks(h.result)
    print_checks(checks)
    print(h.verdict())
    print(f"results: {h.result.path}")
    return 0


def _wide() -> Any:
    import pandas as pd

    return pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 60)


def _cmd_show(args: argparse.Namespace) -> int:
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
        _console().print(text, markup=False, highlight=False)


def print_table(summary: Any, fmt: str, title: str, per_seed: bool, checks: Any = None) -> None:
    from advharness.reporting import render

    if fmt == "table":
        _console().print(render.render(summary, title=title, per_seed=per_seed, checks=checks))
        return
    writer = {"csv": render.to_csv, "md": render.to_markdown, "latex": render.to_latex}[fmt]
    sys.stdout.write(writer(summary, per_seed, checks))


def _cmd_report(args: argparse.Namespace) -> int:
    from advharness.reporting.report.page import FIGURES_DIR, LATEX_DIR, MARKDOWN_NAME, write_report

    page = write_report(args.results, args.out, latex=args.latex)
    print(f"report: {page}")
    print(f"markdown: {page.with_name(MARKDOWN_NAME)} (figures in {page.parent / FIGURES_DIR})")
    if args.latex:
        print(f"latex tables: {page.parent / LATEX_DIR}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
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
    _console().print(support_table(matrix, show_reasons=args.reasons))
    if args.attack:
        _console().print(defaults)
    print(framework_lines(framework_status()))
    return 0


def _run_options(p: argparse.ArgumentParser) -> None:
    """The options of commands that run cells (run, harden)."""
    p.add_argument(
        "--quick",
        action="store_true",
        help="the file's quick profile: its quick overrides first, results under <name>-quick",
    )
    p.add_argument(
        "--backend",
        choices=["pool", "inline", "ray"],
        default="pool",
        help="where cells run: a local process pool (default), this process, or Ray",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="pool/Ray workers (default: the experiment's workers, else CPU cores)",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="join this Ray cluster (e.g. 10.0.0.1:6379 or auto); implies --backend ray",
    )
    p.add_argument(
        "--retry-failed", action="store_true", help="also re-run cells stored as error, timeout or crashed"
    )
    p.add_argument("--results-dir", default="results", help="where runs land (default: results)")
    p.add_argument("--out", default=None, help="exact output directory (default: <results-dir>/<name>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="advharness",
        description="Run the same attacks from ART, Foolbox and CleverHans; referee them alike.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run an experiment file and print the head-to-head table")
    r.add_argument("experiment", help="experiment YAML file")
    r.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="overrides, e.g. attacks.pgd.steps=100 seeds=[0,1] data.n_samples=32",
    )
    r.add_argument(
        "--dry-run",
        action="store_true",
        help="list the cells (and which are already done) without running anything",
    )
    _run_options(r)
    r.set_defaults(func=_cmd_run)
    h = sub.add_parser(
        "harden",
        help="attack, defend, re-attack: one round per defense of the file, with adaptive attacks; "
        "print the before/after table",
    )
    h.add_argument("experiment", help="experiment YAML file with a defenses list")
    h.add_argument("overrides", nargs="*", metavar="key=value", help="overrides, as for run")
    h.add_argument(
        "--target",
        type=float,
        default=None,
        help="stop at the first round whose worst-case success rate is at most this "
        "(default: the file's target_success_rate; none: every round runs)",
    )
    _run_options(h)
    h.set_defaults(func=_cmd_harden)
    s = sub.add_parser(
        "show",
        help="print the head-to-head table of a results directory (every stored cell, earlier runs' too)",
    )
    s.add_argument("results", help="results directory (e.g. results/quickstart)")
    s.add_argument("--attack", action="append", help="only this attack (repeatable)")
    s.add_argument("--library", action="append", help="only this library (repeatable)")
    s.add_argument("--model", action="append", help="only this model (repeatable)")
    s.add_argument(
        "--format",
        choices=["table", "csv", "md", "latex"],
        default="table",
        help="terminal table (default), CSV of the head-to-head table, Markdown or LaTeX",
    )
    s.add_argument(
        "--per-seed", action="store_true", help="one row per experiment seed instead of mean ± sd over seeds"
    )
    s.add_argument(
        "--cell",
        default=None,
        metavar="KEY",
        help="print everything stored about one cell (content key or a prefix): "
        "status, reason, traceback, library call, spec, metrics",
    )
    s.set_defaults(func=_cmd_show)
    rp = sub.add_parser(
        "report",
        help="write a self-contained HTML report and a Markdown file of a results directory",
    )
    rp.add_argument("results", help="results directory (e.g. results/quickstart)")
    rp.add_argument("--out", default=None, help="where to write it (default: <results>/report)")
    rp.add_argument("--latex", action="store_true", help="also write the tables as LaTeX (latex/*.tex)")
    rp.set_defaults(func=_cmd_report)
    c = sub.add_parser("compare", help="two results directories cell by cell, or one against expect: entries")
    c.add_argument("results_a", metavar="RESULTS_A", help="results directory")
    c.add_argument("results_b", metavar="RESULTS_B", nargs="?", default=None, help="results directory")
    c.add_argument(
        "--expect",
        nargs="?",
        const="",
        metavar="EXPERIMENT.yaml",
        help="check the expect: entries of RESULTS_A's experiment (manifest), or of this file",
    )
    c.set_defaults(func=_cmd_compare)
    ls = sub.add_parser(
        "list",
        help="print the support matrix (attack x library x framework) and which frameworks are installed",
    )
    ls.add_argument(
        "--attack",
        default=None,
        help="only this attack, with its defaults (norm, steps, step size, params...)",
    )
    ls.add_argument("--reasons", action="store_true", help="list why combinations are unsupported")
    ls.set_defaults(func=_cmd_list)
    for command in sub.choices.values():  # -v before or after the subcommand
        command.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log progress details"
        )
    return p


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


if __name__ == "__main__":
    sys.exit(main())
