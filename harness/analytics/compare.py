"""Two runs side by side: the cells they share (the same setting) and those only one has.

A cell's setting is its model, framework, library, attack, kind, norm, eps, targeting,
threat model, seed and the settings that tell one attack's cells apart across the two runs
(``steps``, ``param_<name>``..., :func:`~advharness.analytics.frames.setting_columns` of
both summaries together), less the data and the batch size: two runs on different samples
still compare, unpaired. Per shared cell: each run's value of the compared metric (by
default the success rate among the initially correct samples; any metric of
:data:`~advharness.config.expect.METRICS`), for a rate with its Wilson 95 % interval, the
difference ``B - A``, and the test that fits
(:func:`~advharness.analytics.measurement.pair_test`): for a rate McNemar's on the paired
per-sample outcomes when both ran on the same data (``data_sha256``) and have records
(:func:`~advharness.analytics.agreement.mcnemar`), else the two-proportion test
(:func:`~advharness.analytics.intervals.compare_rates`); for a distance (``median_l2``,
``mean_linf``...) the Wilcoxon signed-rank test on the samples both runs broke, when paired
(:func:`~advharness.analytics.agreement.paired_distance_test`), else none; for a cost
(:data:`COST_METRICS`) none: one number per cell, nothing to test it on.
``differs``: ``p < alpha``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from advharness.analytics.frames import CELL_COLUMNS, present, setting_columns
from advharness.analytics.intervals import wilson_interval
from advharness.analytics.measurement import OPTIMALITY, Measurement, RunData, measure, pair_test
from advharness.config.expect import METRICS, RATE_METRICS
from advharness.core.errors import HarnessError

#: Settings that do not make two cells different ones (the samples may differ: unpaired).
NOT_SETTINGS = ("data_sha256", "batch_size")
#: Metrics shown for both runs.
SIDE_METRICS = ("success_rate", "robust_accuracy", "median_norm", "time_s")
#: Metrics of cost: one number per cell, no per-sample outcome to test a difference on.
COST_METRICS = ("time_s", "queries_per_sample", "forward_per_sample", "backward_per_sample")
#: The tests that pair the two runs' samples.
PAIRED_TESTS = ("mcnemar", "wilcoxon")


def setting_keys(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    """The columns that identify a cell across the two summaries (see the module)."""
    both = pd.concat([a, b], ignore_index=True)
    keys = [*CELL_COLUMNS, "eps", *setting_columns(both), "search", "check"]
    return [c for c in dict.fromkeys(present(both, keys)) if c not in NOT_SETTINGS]


def _text(v: Any) -> str:
    if v is None or v is pd.NA or (isinstance(v, float | np.floating) and math.isnan(v)):
        return ""
    if isinstance(v, float | np.floating):
        return f"{float(v):.12g}"
    return str(v)


def _number(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _by_setting(summary: pd.DataFrame, keys: list[str]) -> dict[tuple[str, ...], pd.Series]:
    out: dict[tuple[str, ...], pd.Series] = {}
    for _, row in summary.iterrows():
        out.setdefault(tuple(_text(row.get(k)) for k in keys), row)
    return out


def _records(records: pd.DataFrame | None, row: pd.Series) -> pd.DataFrame:
    if records is None or records.empty or "cell" not in records.columns:
        return pd.DataFrame()
    out: pd.DataFrame = records[records["cell"] == row["cell"]]
    return out


def _count(row: pd.Series, metric: str = "success_rate") -> tuple[int, int]:
    """A rate's count and its denominator (:data:`~advharness.config.expect.RATE_METRICS`)."""
    denominator = _number(row.get(RATE_METRICS[metric]))
    n = 0 if math.isnan(denominator) else int(denominator)
    rate = _number(row.get(metric))
    return (round(rate * n) if n and not math.isnan(rate) else 0), n


def metric_columns(metric: str) -> tuple[str, ...]:
    """The metrics shown for both runs when ``metric`` is compared (``<m>_a``, ``<m>_b``)."""
    return tuple(dict.fromkeys([*SIDE_METRICS, metric]))


def check_metric(metric: str) -> None:
    """A one-line error unless ``metric`` is one two runs can be compared on."""
    if metric not in METRICS:
        raise HarnessError(f"compare: unknown metric {metric!r}; known: {', '.join(METRICS)}")
    if metric == OPTIMALITY:
        raise HarnessError(
            f"compare: {OPTIMALITY} is relative to one run's empirical best, not a cell's own "
            "number; check each run with --expect instead"
        )


def _test(
    ra: pd.Series,
    rb: pd.Series,
    records_a: pd.DataFrame | None,
    records_b: pd.DataFrame | None,
    metric: str,
) -> tuple[str, float]:
    """:func:`~advharness.analytics.measurement.pair_test` of two runs' cells: their records
    side by side, told apart by a ``cell`` of ``A`` and ``B``."""
    if metric in COST_METRICS:
        return "", float("nan")
    ca, cb = _records(records_a, ra), _records(records_b, rb)
    both = not ca.empty and not cb.empty
    summary = pd.DataFrame([ra.to_dict() | {"cell": "A"}, rb.to_dict() | {"cell": "B"}])
    records = pd.concat([ca.assign(cell="A"), cb.assign(cell="B")], ignore_index=True) if both else None
    data = RunData(summary, records)
    sides = []
    for side in ("A", "B"):
        found = measure(data, {"cell": side}, metric)
        if not isinstance(found, Measurement):
            return "", float("nan")
        sides.append(found)
    return pair_test(data, sides[0], sides[1], metric)


def compare_results(
    summary_a: pd.DataFrame,
    records_a: pd.DataFrame | None,
    summary_b: pd.DataFrame,
    records_b: pd.DataFrame | None,
    alpha: float = 0.05,
    metric: str = "success_rate",
) -> pd.DataFrame:
    """One row per cell setting of either run (see the module): the setting, ``in``
    (``both``, ``A only``, ``B only``), ``status_a``/``status_b``, ``<m>_a``/``_b`` of
    :func:`metric_columns` (:data:`SIDE_METRICS` and ``metric``),
    ``success_rate_{a,b}_ci_low/_high`` (and ``<metric>_{a,b}_ci_low/_high`` for another
    rate), ``difference`` (B - A of ``metric``), ``paired``, ``test`` (``""``: none fits,
    e.g. a cost), ``p_value`` and ``differs``. Cells that failed in a run count as in it
    (their status says so) but get no test. An unknown ``metric``: a one-line error."""
    check_metric(metric)
    keys = setting_keys(summary_a, summary_b)
    side_a, side_b = _by_setting(summary_a, keys), _by_setting(summary_b, keys)
    rates = dict.fromkeys(["success_rate", *([metric] if metric in RATE_METRICS else [])])
    rows = []
    for setting in dict.fromkeys([*side_a, *side_b]):
        ra, rb = side_a.get(setting), side_b.get(setting)
        first = ra if ra is not None else rb
        assert first is not None
        row: dict[str, Any] = {k: first.get(k) for k in keys}
        row["in"] = "both" if ra is not None and rb is not None else ("A only" if rb is None else "B only")
        for side, r in (("a", ra), ("b", rb)):
            row[f"status_{side}"] = "" if r is None else str(r.get("status", "ok"))
            for m in metric_columns(metric):
                row[f"{m}_{side}"] = float("nan") if r is None else _number(r.get(m))
            for m in rates:
                k, n = (0, 0) if r is None else _count(r, m)
                low, high = wilson_interval(k, n)
                row[f"{m}_{side}_ci_low"], row[f"{m}_{side}_ci_high"] = float(low), float(high)
        row.update(difference=float("nan"), paired=False, test="", p_value=float("nan"), differs=False)
        if ra is not None and rb is not None and row["status_a"] == "ok" and row["status_b"] == "ok":
            row["difference"] = row[f"{metric}_b"] - row[f"{metric}_a"]
            test, p = _test(ra, rb, records_a, records_b, metric)
            row.update(paired=test in PAIRED_TESTS, test=test, p_value=p, differs=bool(p < alpha))
        rows.append(row)
    return pd.DataFrame(rows)
