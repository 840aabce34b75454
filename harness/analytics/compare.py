"""Two runs side by side: the cells they share (the same setting) and those only one has.

A cell's setting is its model, framework, library, attack, kind, norm, eps, targeting,
threat model, seed and the settings that tell one attack's cells apart across the two runs
(``steps``, ``param_<name>``..., :func:`~advharness.analytics.frames.setting_columns` of
both summaries together), less the data and the batch size: two runs on different samples
still compare, unpaired. Per shared cell: each run's success rate (among the initially
correct samples) with its Wilson 95 % interval, the difference ``B - A``, and the test:
McNemar's on the paired successes when both ran on the same data (``data_sha256``) and
have records (:func:`~advharness.analytics.agreement.mcnemar`), else the two-proportion
test (:func:`~advharness.analytics.intervals.compare_rates`). ``differs``: ``p < alpha``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from advharness.analytics.agreement import mcnemar
from advharness.analytics.checks_base import matched
from advharness.analytics.frames import CELL_COLUMNS, present, setting_columns
from advharness.analytics.intervals import compare_rates, wilson_interval

#: Settings that do not make two cells different ones (the samples may differ: unpaired).
NOT_SETTINGS = ("data_sha256", "batch_size")
#: Metrics shown for both runs.
SIDE_METRICS = ("success_rate", "robust_accuracy", "median_norm", "time_s")


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


def _count(row: pd.Series) -> tuple[int, int]:
    n = int(row.get("n_correct") or 0)
    rate = float(row.get("success_rate", float("nan")))
    return (round(rate * n) if n and not math.isnan(rate) else 0), n


def compare_results(
    summary_a: pd.DataFrame,
    records_a: pd.DataFrame | None,
    summary_b: pd.DataFrame,
    records_b: pd.DataFrame | None,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """One row per cell setting of either run (see the module): the setting, ``in``
    (``both``, ``A only``, ``B only``), ``status_a``/``status_b``, ``<metric>_a``/``_b`` of
    :data:`SIDE_METRICS`, ``success_rate_{a,b}_ci_low/_high``, ``difference`` (B - A
    success rate), ``paired``, ``test``, ``p_value`` and ``differs``. Cells that failed in
    a run count as in it (their status says so) but get no test."""
    keys = setting_keys(summary_a, summary_b)
    side_a, side_b = _by_setting(summary_a, keys), _by_setting(summary_b, keys)
    rows = []
    for setting in dict.fromkeys([*side_a, *side_b]):
        ra, rb = side_a.get(setting), side_b.get(setting)
        first = ra if ra is not None else rb
        assert first is not None
        row: dict[str, Any] = {k: first.get(k) for k in keys}
        row["in"] = "both" if ra is not None and rb is not None else ("A only" if rb is None else "B only")
        for side, r in (("a", ra), ("b", rb)):
            row[f"status_{side}"] = "" if r is None else str(r.get("status", "ok"))
            for m in SIDE_METRICS:
                row[f"{m}_{side}"] = float("nan") if r is None else _number(r.get(m))
            k, n = (0, 0) if r is None else _count(r)
            low, high = wilson_interval(k, n)
            row[f"success_rate_{side}_ci_low"], row[f"success_rate_{side}_ci_high"] = float(low), float(high)
        row.update(difference=float("nan"), paired=False, test="", p_value=float("nan"), differs=False)
        if ra is not None and rb is not None and row["status_a"] == "ok" and row["status_b"] == "ok":
            row["difference"] = row["success_rate_b"] - row["success_rate_a"]
            ca, cb = _records(records_a, ra), _records(records_b, rb)
            paired = ra.get("data_sha256") == rb.get("data_sha256") and not ca.empty and not cb.empty
            if paired:
                both = matched(ca, cb, "success")
                test, p = "mcnemar", float(mcnemar(both["broken_a"], both["broken_b"])["p_value"])
            else:
                res = compare_rates(*_count(ra), *_count(rb), alpha=alpha)
                test, p = str(res["test"]), float(res["p_value"])
            row.update(paired=bool(paired), test=test, p_value=p, differs=bool(p < alpha))
        rows.append(row)
    return pd.DataFrame(rows)
