"""One side of an expectation measured on a run (:mod:`advharness.analytics.expectations`).

A selector picks the ``ok`` summary rows whose columns equal its values (numbers within
``1e-9`` relative); ``worst_case: true`` in a selector makes the rows one measurement of
their per-sample worst case instead (below). What the picked rows measure:

* **A rate** (:data:`~advharness.config.expect.RATE_METRICS`) is pooled: successes summed
  over the summed denominators. Cells that ran on the same samples (one ``data_sha256``)
  are not independent evidence, so the Wilson 95 % interval
  (:func:`~advharness.analytics.intervals.wilson_interval`) and the two-proportion test use
  ``n`` = the number of distinct samples: per data set the largest denominator of its
  cells, summed over data sets (rows without a ``data_sha256`` count as data sets of their
  own). A per-sample mean of several outcomes varies no more than one outcome, so this is
  conservative; pooling three libraries' cells on 50 images is 50 samples, not 150.
* **The worst case** (``worst_case: true``): a sample is broken when any picked cell broke
  it within its eps (``success_at_eps``), robust when correct and broken by none (Carlini et
  al. 2019, §4.2, :mod:`advharness.analytics.worstcase`); the cells must share one model
  and data (else it is not measured, with the reason). Rates only.
* **``local_optimality``**: each cell's AttackBench local optimality
  (:func:`~advharness.analytics.optimality.local_optimality`) against the empirical best of
  *every* minimum-norm or eps-search cell of the run on the same model, norm and
  targeting; several cells average per model first, then over models (global optimality).
* **Any other metric**: the mean over the picked cells.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from advharness.analytics.agreement import mcnemar, paired_distance_test
from advharness.analytics.checks_base import SAMPLE_KEYS, matched, per_sample
from advharness.analytics.distances import per_sample_distances
from advharness.analytics.frames import present
from advharness.analytics.intervals import compare_rates, wilson_interval
from advharness.analytics.optimality import local_optimality
from advharness.analytics.worstcase import per_sample_worst_case
from advharness.config.expect import RATE_METRICS, WORST_CASE

#: The metric computed from the records rather than read from the summary.
OPTIMALITY = "local_optimality"


def num(v: float | None) -> str:
    """``v`` to 4 significant digits (``-`` for none or NaN)."""
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


def selector_text(selector: Mapping[str, Any]) -> str:
    """``attack=fgsm, library=art`` (``all rows`` for an empty selector)."""
    return ", ".join(f"{k}={v}" for k, v in selector.items()) or "all rows"


@dataclass(frozen=True)
class Measurement:
    """One side's number: a rate (``k`` of ``n`` distinct samples, with its interval, from
    ``n_outcomes`` pooled outcomes) or a mean; ``outcomes``: per sample, what a worst-case
    rate counts (for the paired test)."""

    value: float
    rows: pd.DataFrame
    k: int | None = None
    n: int | None = None
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    n_outcomes: int | None = None
    outcomes: pd.Series | None = None

    def text(self) -> str:
        cells = f"{len(self.rows)} cell{'s' if len(self.rows) != 1 else ''}"
        if self.outcomes is not None:
            cells = f"worst case over {cells}"
        elif self.n_outcomes is not None and self.n_outcomes != self.n:
            cells += f", {self.n_outcomes} outcomes pooled"
        if self.n is None:
            return f"{num(self.value)} ({cells})"
        return f"{num(self.value)} [{num(self.ci_low)}, {num(self.ci_high)}] (n={self.n}, {cells})"


@dataclass
class RunData:
    """A run's summary and records, with what the measurements derive from them once."""

    summary: pd.DataFrame
    records: pd.DataFrame | None

    @cached_property
    def distances(self) -> pd.DataFrame:
        """:func:`~advharness.analytics.distances.per_sample_distances` of the records."""
        if self.records is None or self.records.empty:
            return pd.DataFrame()
        return per_sample_distances(self.records, self.summary)

    @cached_property
    def optimality(self) -> pd.DataFrame:
        """:func:`~advharness.analytics.optimality.local_optimality` of every cell."""
        return local_optimality(self.distances) if not self.distances.empty else pd.DataFrame()

    def cell_records(self, row: pd.Series) -> pd.DataFrame:
        """The records of the summary ``row``'s cell (none without records)."""
        if self.records is None or self.records.empty:
            return pd.DataFrame()
        col = "cell" if "cell" in self.records.columns and "cell" in row.index else "cell_key"
        out: pd.DataFrame = self.records[self.records[col] == row[col]]
        return out


def select(summary: pd.DataFrame, selector: Mapping[str, Any]) -> tuple[pd.DataFrame, str | None]:
    """The ``ok`` rows of ``summary`` ``selector`` picks (``worst_case`` is not a column),
    or no rows and the reason."""
    mask = pd.Series(True, index=summary.index)
    for col, want in selector.items():
        if col == WORST_CASE:
            continue
        if col not in summary.columns:
            return summary.iloc[0:0], f"the results have no column {col!r}"
        values = summary[col]
        if isinstance(want, bool):
            mask &= values.map(lambda x, w=want: isinstance(x, bool | np.bool_) and bool(x) == w)
        elif isinstance(want, int | float):
            number = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
            mask &= np.isclose(number, float(want), rtol=1e-9, atol=1e-12)
        else:
            mask &= values.astype(str) == str(want)
    picked = summary[mask]
    if picked.empty:
        return picked, f"no row matches {selector_text(selector)}"
    ok = picked[picked["status"] == "ok"] if "status" in picked.columns else picked
    if ok.empty:
        statuses = ", ".join(f"{s} {n}" for s, n in picked["status"].value_counts().items())
        return ok, f"{len(picked)} rows match {selector_text(selector)}, none ok ({statuses})"
    return ok, None


def distinct_samples(rows: pd.DataFrame, denominators: np.ndarray) -> int:
    """Per data set (``data_sha256``) the largest denominator, summed (see the module)."""
    if "data_sha256" not in rows.columns:
        return int(denominators.sum())
    data = rows["data_sha256"].to_numpy(dtype=object)
    known = pd.notna(data)
    total = int(denominators[~known].sum())
    for sha in dict.fromkeys(data[known]):
        total += int(denominators[data == sha].max())
    return total


def _rate(rows: pd.DataFrame, values: np.ndarray, denominators: np.ndarray) -> Measurement:
    k_pooled, n_pooled = float((values * denominators).sum()), int(denominators.sum())
    value = k_pooled / n_pooled
    n = distinct_samples(rows, denominators)
    k = round(value * n)
    low, high = wilson_interval(value * n, n)
    return Measurement(value, rows, k, n, float(low), float(high), n_outcomes=n_pooled)


def _worst_case(
    data: RunData, rows: pd.DataFrame, metric: str, selector: Mapping[str, Any]
) -> Measurement | str:
    where = selector_text(selector)
    if metric not in RATE_METRICS:
        return f"the worst case measures rates only, not {metric}"
    if data.records is None or data.records.empty:
        return f"the worst case over {where} needs the records"
    recs = pd.concat([data.cell_records(row) for _, row in rows.iterrows()], ignore_index=True)
    if recs.empty:
        return f"no records for {where}"
    if recs["cell_key"].nunique() < len(rows.drop_duplicates(present(rows, ["cell_key"]))):
        return f"some cells of {where} have no records"
    try:
        samples = per_sample_worst_case(recs)
    except ValueError as exc:
        return f"{where}: {exc}"
    if metric == "clean_accuracy":
        outcome, base = samples["correct"], pd.Series(True, index=samples.index)
    elif metric.startswith("robust_accuracy"):
        outcome, base = samples["robust"], pd.Series(True, index=samples.index)
    else:
        outcome, base = samples["broken"], samples["correct"]
    counted = outcome[base.to_numpy(bool)].astype(bool)
    counted.index = samples["sample"][base.to_numpy(bool)].to_numpy()
    k, n = int(counted.sum()), len(counted)
    if n == 0:
        return f"{metric} is undefined for the worst case over {where} (no sample counts)"
    low, high = wilson_interval(k, n)
    return Measurement(k / n, rows, k, n, float(low), float(high), n_outcomes=n, outcomes=counted)


def _optimality(data: RunData, rows: pd.DataFrame, selector: Mapping[str, Any]) -> Measurement | str:
    opt = data.optimality
    if opt.empty:
        return f"{OPTIMALITY} needs records of minimum-norm or eps-search cells"
    cells = rows.drop_duplicates(present(rows, ["cell_key"]))
    picked = opt[opt["cell_key"].isin(cells["cell_key"])]
    picked = picked[picked["local_optimality"].notna()]
    if picked.empty:
        return (
            f"{OPTIMALITY} is undefined on every cell of {selector_text(selector)} (a fixed-budget "
            "cell without an eps search has no distances; a model whose best breaks nothing has none)"
        )
    per_model = picked.groupby("model", sort=False)["local_optimality"].mean()
    return Measurement(float(per_model.mean()), cells[cells["cell_key"].isin(picked["cell_key"])])


def measure(data: RunData, selector: Mapping[str, Any], metric: str) -> Measurement | str:
    """The metric over the ``ok`` rows ``selector`` picks (see the module), or why none."""
    rows, why = select(data.summary, selector)
    if why is not None:
        return why
    if selector.get(WORST_CASE):
        return _worst_case(data, rows, metric, selector)
    if metric == OPTIMALITY:
        return _optimality(data, rows, selector)
    if metric not in rows.columns:
        return f"the results have no column {metric!r}"
    values = pd.to_numeric(rows[metric], errors="coerce").to_numpy(dtype=np.float64)
    denom = RATE_METRICS.get(metric)
    if denom is not None and denom in rows.columns:
        m = pd.to_numeric(rows[denom], errors="coerce").to_numpy(dtype=np.float64)
        keep = ~np.isnan(values) & ~np.isnan(m) & (m > 0)
        if not keep.any():
            return f"{metric} is undefined on every row of {selector_text(selector)}"
        return _rate(rows[keep], values[keep], m[keep])
    if np.isnan(values).all():
        return f"{metric} is missing on every row of {selector_text(selector)}"
    return Measurement(float(np.nanmean(values)), rows)


def _outcomes(recs: pd.DataFrame, metric: str, by_sample: bool = False) -> pd.Series:
    """Per sample (:func:`~advharness.analytics.checks_base.per_sample`'s index, or ``sample``
    alone), what the rate counts: success rates count the initially correct samples only."""
    ps = per_sample(recs, "success" if metric == "success_rate" else "success_at_eps")
    if metric == "clean_accuracy":
        s = ps["correct"]
    elif metric.startswith("robust_accuracy"):
        s = ps["correct"] & ~ps["broken"]
    else:
        s = ps.loc[ps["correct"], "broken"]
    if by_sample:
        s.index = s.index.get_level_values("sample")
        s = s[~s.index.duplicated()]
    return s


def _single(m: Measurement) -> pd.Series | None:
    return m.rows.iloc[0] if len(m.rows) == 1 and m.outcomes is None else None


def _same_data(a: Measurement, b: Measurement) -> bool:
    shas = {str(sha) for m in (a, b) for sha in m.rows.get("data_sha256", pd.Series([None]))}
    return len(shas) == 1 and "None" not in shas and "nan" not in shas


def _optimality_test(data: RunData, ra: pd.Series, rb: pd.Series) -> tuple[str, float]:
    """Wilcoxon on the per-sample distances capped at the best's largest ``R`` (the area
    under the robust-accuracy curve is their mean), when both cells share one best."""
    opt = data.optimality.set_index("cell_key")
    if ra["cell_key"] not in opt.index or rb["cell_key"] not in opt.index:
        return "", float("nan")
    oa, ob = opt.loc[ra["cell_key"]], opt.loc[rb["cell_key"]]
    if oa["model"] != ob["model"] or oa["max_distance"] != ob["max_distance"]:
        return "", float("nan")
    d = data.distances
    r_max = float(oa["max_distance"])
    da = d[d["cell_key"] == ra["cell_key"]].set_index("sample")["distance"].clip(upper=r_max)
    db = d[d["cell_key"] == rb["cell_key"]].set_index("sample")["distance"].clip(upper=r_max)
    both = pd.concat([da, db], axis=1, join="inner").dropna()
    return "wilcoxon", float(paired_distance_test(both.iloc[:, 0], both.iloc[:, 1])["p_value"])


def _paired_outcomes(
    data: RunData, a: Measurement, b: Measurement, ra: pd.Series | None, rb: pd.Series | None, metric: str
) -> pd.DataFrame | None:
    """Both sides' per-sample outcomes on their common samples (None: a side is neither one
    cell nor a worst case). Two cells' success rates count the samples correct in both."""
    if ra is not None and rb is not None:
        ca, cb = data.cell_records(ra), data.cell_records(rb)
        if ca.empty or cb.empty:
            return None
        if metric.startswith("success_rate"):
            column = "success" if metric == "success_rate" else "success_at_eps"
            return matched(ca, cb, column)
        return pd.concat([_outcomes(ca, metric), _outcomes(cb, metric)], axis=1, join="inner")
    sides = []
    for m, row in ((a, ra), (b, rb)):
        if m.outcomes is not None:
            sides.append(m.outcomes)
        elif row is not None and not data.cell_records(row).empty:
            sides.append(_outcomes(data.cell_records(row), metric, by_sample=True))
        else:
            return None
    return pd.concat(sides, axis=1, join="inner")


def pair_test(data: RunData, a: Measurement, b: Measurement, metric: str) -> tuple[str, float]:
    """The test (name, two-sided p-value) of ``a`` against ``b``; ``("", nan)`` when none
    fits. Paired when both sides are one cell or a worst case on the same data with
    records: McNemar's test on the per-sample outcomes for a rate, the Wilcoxon signed-rank
    test on the commonly broken samples' distances (on the capped distances for
    ``local_optimality``); otherwise, for a rate, the two-proportion test at the distinct
    samples' ``n``."""
    ra, rb = _single(a), _single(b)
    paired = _same_data(a, b) and data.records is not None and not data.records.empty
    if paired and metric in RATE_METRICS:
        both = _paired_outcomes(data, a, b, ra, rb, metric)
        if both is not None and len(both):
            return "mcnemar", float(mcnemar(both.iloc[:, 0], both.iloc[:, 1])["p_value"])
    if paired and ra is not None and rb is not None:
        if metric == OPTIMALITY:
            return _optimality_test(data, ra, rb)
        ca, cb = data.cell_records(ra), data.cell_records(rb)
        norm = metric.split("_", 1)[1]
        norm = str(ra.get("norm")) if norm == "norm" else norm
        if metric not in RATE_METRICS and norm in ca.columns and not cb.empty:
            keys = present(ca, SAMPLE_KEYS)
            pa = ca.drop_duplicates(keys).set_index(keys)
            pb = cb.drop_duplicates(keys).set_index(keys)
            j = pa[["correct", "success", norm]].join(
                pb[["correct", "success", norm]], how="inner", lsuffix="_a", rsuffix="_b"
            )
            both_broken = j["correct_a"] & j["correct_b"] & j["success_a"] & j["success_b"]
            j = j[both_broken.astype(bool)]
            return "wilcoxon", float(paired_distance_test(j[f"{norm}_a"], j[f"{norm}_b"])["p_value"])
    if a.n is not None and b.n is not None and a.k is not None and b.k is not None:
        res = compare_rates(a.k, a.n, b.k, b.n)
        return str(res["test"]), float(res["p_value"])
    return "", float("nan")
