"""``advharness compare``: two results directories side by side, or a results directory
against the published figures of its experiment (``expect:``), as text for the terminal;
and the expectations table a run stores (:data:`EXPECTATIONS_FILE`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from advharness.analytics.compare import COST_METRICS, check_metric, compare_results, metric_columns
from advharness.analytics.expectations import check_expectations
from advharness.config.expect import RATE_METRICS, Expectation
from advharness.core.atomic import atomic_write
from advharness.core.errors import HarnessError
from advharness.reporting.run_result import RunResult

#: The expectations table of a run whose experiment has ``expect:``.
EXPECTATIONS_FILE = "expectations.csv"


def _wide() -> Any:
    return pd.option_context("display.width", 250, "display.max_columns", 40, "display.max_colwidth", 120)


def _rate(v: float, low: float, high: float) -> str:
    if math.isnan(v):
        return "-"
    return f"{v:.3f} [{low:.2f}, {high:.2f}]"


def _value(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.4g}"


def _summary_line(n_both: int, n_diff: int, metric: str) -> str:
    head = f"{n_both} cell settings in both runs"
    if metric in COST_METRICS:
        return f"{head}; {metric} is a cost, one number per cell: no test"
    if metric in RATE_METRICS:
        why = "McNemar on paired samples (same data), else the two-proportion test"
    else:
        why = "Wilcoxon signed-rank on the samples both runs broke, paired samples (same data) only"
    return f"{head}; {n_diff} differ (p < 0.05: {why})"


def _no_test(row: pd.Series, metric: str) -> str:
    """The test column of a shared cell without a test: why none."""
    if row["status_a"] != "ok" or row["status_b"] != "ok" or math.isnan(row["difference"]):
        return "-"
    if metric in COST_METRICS:
        return "none (a cost)"
    return "-" if metric in RATE_METRICS else "none (not paired)"


def differences_text(table: pd.DataFrame, name_a: str, name_b: str, metric: str = "success_rate") -> str:
    """The shared cells (``metric`` of each run, for a rate with its interval, the
    difference, the test), then the cells only one run has."""
    if table.empty:
        return f"no cells in {name_a} or {name_b}"
    shown = [c for c in table.columns if c in _key_columns(table, metric)]
    both = table[table["in"] == "both"]
    lines = [f"A: {name_a}", f"B: {name_b}", ""]
    rate = metric in RATE_METRICS
    if both.empty:
        lines.append("no cell setting is in both runs")
    else:
        out = both[shown].copy()
        out["status"] = [
            a if a == b else f"{a} / {b}" for a, b in zip(both["status_a"], both["status_b"], strict=True)
        ]
        label = "success" if metric == "success_rate" else metric
        for side in ("a", "b"):
            values = both[f"{metric}_{side}"]
            if rate:
                out[f"{label} {side.upper()} [95%]"] = [
                    _rate(v, lo, hi)
                    for v, lo, hi in zip(
                        values,
                        both[f"{metric}_{side}_ci_low"],
                        both[f"{metric}_{side}_ci_high"],
                        strict=True,
                    )
                ]
            else:
                out[f"{label} {side.upper()}"] = values.map(_value)
        spec = "+.3f" if rate else "+.4g"
        out["B - A"] = both["difference"].map(lambda v: "-" if math.isnan(v) else format(v, spec))
        out["test"] = [
            f"{r['test']} p={r['p_value']:.3g}" if r["test"] else _no_test(r, metric)
            for _, r in both.iterrows()
        ]
        out["differs"] = both["differs"].map(lambda v: "yes" if v else "")
        n_diff = int(both["differs"].sum())
        with _wide():
            lines.append(out.to_string(index=False))
        lines.append(_summary_line(len(both), n_diff, metric))
    for where, name in (("A only", name_a), ("B only", name_b)):
        only = table[table["in"] == where]
        if only.empty:
            continue
        lines.append(f"\nonly in {where[0]} ({name}): {len(only)} cell settings")
        with _wide():
            lines.append(only[shown].to_string(index=False))
    return "\n".join(lines)


def _key_columns(table: pd.DataFrame, metric: str = "success_rate") -> list[str]:
    """The setting columns worth showing: those that vary in the table, plus the core ones."""
    core = ("model", "attack", "norm", "eps", "library")
    measured = ("status_", *(f"{m}_" for m in metric_columns(metric)))
    return [
        c
        for c in table.columns
        if c not in ("in",)
        and not c.startswith(measured)
        and c not in ("difference", "paired", "test", "p_value", "differs")
        and (c in core or table[c].astype(str).nunique() > 1)
    ]


def compare_dirs(
    a: RunResult, b: RunResult, alpha: float = 0.05, metric: str = "success_rate"
) -> pd.DataFrame:
    """:func:`~advharness.analytics.compare.compare_results` of two loaded results."""
    return compare_results(a.summary, a.records, b.summary, b.records, alpha, metric)


def expectations_of(result: RunResult, experiment_file: str | None = None) -> list[Expectation]:
    """The expectations of ``experiment_file`` (validated as an experiment), else of the
    experiment stored in the results' manifest; a one-line error when there are none."""
    if experiment_file is not None:
        from advharness.config.experiment import load_experiment

        exp = load_experiment(experiment_file)
        if not exp.expect:
            raise HarnessError(f"{experiment_file}: the experiment has no expect: entries")
        return list(exp.expect)
    from pydantic import TypeAdapter, ValidationError

    where = f"{result.path}/manifest.json" if result.path is not None else "the manifest"
    raw = result.manifest.get("experiment", {}).get("expect")
    if not raw:
        raise HarnessError(
            f"{where}: the experiment stored there has no expect: entries; give --expect EXPERIMENT.yaml"
        )
    try:
        return list(TypeAdapter(list[Expectation]).validate_python(raw))
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(map(str, first["loc"]))
        raise HarnessError(f"{where}: expect[{loc}]: {first['msg']}") from None


def expectations_table(result: RunResult, expectations: Sequence[Expectation]) -> pd.DataFrame:
    """:func:`~advharness.analytics.expectations.check_expectations` on ``result``."""
    return check_expectations(result.summary, result.records, expectations)


def expectations_text(table: pd.DataFrame, title: str, deviations: Sequence[str] = ()) -> str:
    """Published vs measured, one expectation per block of lines, and the verdict counts;
    first the experiment's ``deviations`` from the published setting, when it states any."""
    lines = [f"{title}: published vs measured"]
    if deviations:
        lines.append("deviations from the published setting:")
        lines += [f"  - {d}" for d in deviations]
    for _, r in table.iterrows():
        lines.append(
            f"[{r['verdict']}] {r['metric']} ({r['kind']}) where {r['where']}  source: {r['source']}"
        )
        lines.append(f"    published: {r['published']}")
        lines.append(f"    measured:  {r['measured'] or '-'}")
        lines.append(f"    evidence:  {r['evidence']}")
        if r["note"]:
            lines.append(f"    note:      {r['note']}")
    counts = table["verdict"].value_counts()
    lines.append(", ".join(f"{counts.get(v, 0)} {v}" for v in ("PASS", "DIFFERS", "NOT RUN")))
    return "\n".join(lines)


def write_expectations(table: pd.DataFrame, run_dir: Path) -> Path:
    """Store the expectations table as ``<run_dir>/expectations.csv`` (atomically)."""
    path = Path(run_dir) / EXPECTATIONS_FILE
    atomic_write(path, lambda p: table.to_csv(p, index=False))
    return path


def compare_command(
    results_a: str, results_b: str | None, expect: str | None, metric: str | None = None
) -> str:
    """What ``advharness compare`` prints: ``results_a`` against ``results_b`` on ``metric``
    (None: the success rate), or (``expect`` given: ``""`` for the manifest's experiment,
    else an experiment file) against the published figures. One-line errors for bad input."""
    from advharness.reporting.results import read_results

    if (results_b is None) == (expect is None):
        raise HarnessError("compare: give RESULTS_B (two runs) or --expect [EXPERIMENT.yaml], one of them")
    if metric is not None:
        check_metric(metric)
        if expect is not None:
            raise HarnessError("compare: --metric is for two runs; each expect: entry names its own metric")
    a = read_results(results_a)
    name_a = str(a.manifest.get("experiment", {}).get("name") or results_a)
    if expect is not None:
        expectations = expectations_of(a, expect or None)
        deviations = a.manifest.get("experiment", {}).get("deviations") or ()
        return expectations_text(expectations_table(a, expectations), name_a, deviations)
    assert results_b is not None
    metric = metric or "success_rate"
    table = compare_dirs(a, read_results(results_b), metric=metric)
    return differences_text(table, results_a, results_b, metric)
