"""The argument parser: the commands, their arguments and options."""

from __future__ import annotations

import argparse

from advharness.cli.results import cmd_compare, cmd_list, cmd_report, cmd_show
from advharness.cli.running import cmd_harden, cmd_run


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
    r.set_defaults(func=cmd_run)
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
    h.set_defaults(func=cmd_harden)
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
    s.set_defaults(func=cmd_show)
    rp = sub.add_parser(
        "report",
        help="write a self-contained HTML report and a Markdown file of a results directory",
    )
    rp.add_argument("results", help="results directory (e.g. results/quickstart)")
    rp.add_argument("--out", default=None, help="where to write it (default: <results>/report)")
    rp.add_argument("--latex", action="store_true", help="also write the tables as LaTeX (latex/*.tex)")
    rp.set_defaults(func=cmd_report)
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
    c.add_argument(
        "--metric",
        default=None,
        metavar="METRIC",
        help="what two runs are compared on (default: success_rate): a rate (robust_accuracy, "
        "clean_accuracy, success_rate_at_eps...), a distance (median_l2, mean_norm...) or a cost "
        "(time_s, queries_per_sample...), as expect: names them",
    )
    c.set_defaults(func=cmd_compare)
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
    ls.set_defaults(func=cmd_list)
    for command in sub.choices.values():  # -v before or after the subcommand
        command.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log progress details"
        )
    return p
