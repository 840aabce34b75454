"""Published vs measured: each expectation of an experiment (``expect:``, see
:mod:`advharness.config.expect`) checked against a run's summary and records.

A selector picks the ``ok`` summary rows whose columns equal its values (numbers within
``1e-9`` relative). The rows it picks are one measurement: a rate is pooled over them
(successes summed over the summed denominators, with its Wilson 95 % interval,
:func:`~advharness.analytics.intervals.wilson_interval`); any other metric is their mean.

Verdicts: ``PASS``; ``DIFFERS`` (with the numbers that differ); ``NOT RUN`` (a selector
matched no ``ok`` row, or an equality has one side only: the reason says which).

* ``value``: PASS when ``|measured - published| <= tolerance``; for a rate the evidence
  also says whether the published value lies inside the interval widened by the tolerance
  (a small sample may be consistent with a figure its point estimate misses).
* ``equal_across``: PASS when the largest difference between the groups is within the
  tolerance; the evidence adds the smallest p-value over the pairs of groups of the test
  that fits them (below).
* ``order`` / ``greater_than``: PASS when every step goes strictly the stated way; each
  step's test is in the evidence (a step may go the right way by chance: its p-value says
  how likely that is).

Tests between two sides: one cell each on the same data (``data_sha256``) with records:
McNemar's test on the paired per-sample outcomes
(:func:`~advharness.analytics.agreement.mcnemar`) for a rate, the Wilcoxon signed-rank
test on the commonly broken samples
(:func:`~advharness.analytics.agreement.paired_distance_test`) for a distance; otherwise, for
a rate, the two-proportion test (:func:`~advharness.analytics.intervals.compare_rates`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations, pairwise
from typing import Any

import numpy as np
import pandas as pd

from advharness.analytics.agreement import mcnemar, paired_distance_test
from advharness.analytics.checks_base import SAMPLE_KEYS, matched
from advharness.analytics.frames import present
from advharness.analytics.intervals import compare_rates, wilson_interval
from advharness.config.expect import RATE_METRICS, Expectation

VERDICTS = ("PASS", "DIFFERS", "NOT RUN")
COLUMNS = (
    "expectation",
    "kind",
    "metric",
    "where",
    "published",
    "measured",
    "verdict",
    "evidence",
    "source",
    "note",
    "published_value",
    "tolerance",
    "measured_value",
    "ci_low",
    "ci_high",
    "difference",
    "test",
    "p_value",
    "n_cells",
)


@dataclass(frozen=True)
class Measurement:
    """One side's number: the pooled rate (``k`` of ``n``, with its interval) or the mean."""

    value: float
    rows: pd.DataFrame
    k: int | None = None
    n: int | None = None
    ci_low: float = float("nan")
    ci_high: float = float("nan")

    def text(self) -> str:
        cells = f"{len(self.rows)} cell{'s' if len(self.rows) != 1 else ''}"
        if self.n is None:
            return f"{_num(self.value)} ({cells})"
        return f"{_num(self.value)} [{_num(self.ci_low)}, {_num(self.ci_high)}] (n={self.n}, {cells})"


def selector_text(selector: Mapping[str, Any]) -> str:
    """``attack=fgsm, library=art`` (``all rows`` for an empty selector)."""
    return ", ".join(f"{k}={v}" for k, v in selector.items()) or "all rows"


def select(summary: pd.DataFrame, selector: Mapping[str, Any]) -> tuple[pd.DataFrame, str | None]:
    """The ``ok`` rows of ``summary`` ``selector`` picks, or no rows and the reason."""
    mask = pd.Series(True, index=summary.index)
    for col, want in selector.items():
        if col not in summary.columns:
            return summary.iloc[0:0], f"the results have no column {col!r}"
        values = summary[col]
        if isinstance(want, bool):
            mask &= values.map(lambda x, w=want: isinstance(x, bool | np.bool_) and bool(x) == w)
        elif isinstance(want, int | float):
            num = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
            mask &= np.isclose(num, float(want), rtol=1e-9, atol=1e-12)
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


def measure(summary: pd.DataFrame, selector: Mapping[str, Any], metric: str) -> Measurement | str:
    """The metric over the ``ok`` rows ``selector`` picks (see the module), or why none."""
    rows, why = select(summary, selector)
    if why is not None:
        return why
    if metric not in rows.columns:
        return f"the results have no column {metric!r}"
    values = pd.to_numeric(rows[metric], errors="coerce").to_numpy(dtype=np.float64)
    denom = RATE_METRICS.get(metric)
    if denom is not None and denom in rows.columns:
        m = pd.to_numeric(rows[denom], errors="coerce").to_numpy(dtype=np.float64)
        keep = ~np.isnan(values) & ~np.isnan(m) & (m > 0)
        if not keep.any():
            return f"{metric} is undefined on every row of {selector_text(selector)}"
        k, n = int(np.round(values[keep] * m[keep]).sum()), int(m[keep].sum())
        low, high = wilson_interval(k, n)
        return Measurement(k / n, rows, k, n, float(low), float(high))
    if np.isnan(values).all():
        return f"{metric} is missing on every row of {selector_text(selector)}"
    return Measurement(float(np.nanmean(values)), rows)


def _num(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


def _single_cell(m: Measurement) -> pd.Series | None:
    return m.rows.iloc[0] if len(m.rows) == 1 else None


def _cell_records(records: pd.DataFrame, row: pd.Series) -> pd.DataFrame:
    col = "cell" if "cell" in records.columns and "cell" in row.index else "cell_key"
    out: pd.DataFrame = records[records[col] == row[col]]
    return out


def _outcome(recs: pd.DataFrame, metric: str) -> pd.Series:
    """Per sample (indexed by the sample keys), what the rate counts."""
    keys = present(recs, SAMPLE_KEYS)
    correct = recs["correct"].astype(bool).to_numpy()
    hit = recs["success_at_eps"].astype(bool).to_numpy()
    values = correct if metric == "clean_accuracy" else correct & ~hit
    s = pd.Series(values, index=pd.MultiIndex.from_frame(recs[keys]))
    return s[~s.index.duplicated()]


def pair_test(a: Measurement, b: Measurement, metric: str, records: pd.DataFrame | None) -> tuple[str, float]:
    """The test (name, two-sided p-value) of ``a`` against ``b`` (see the module); ``("",
    nan)`` when none fits."""
    ra, rb = _single_cell(a), _single_cell(b)
    paired = (
        records is not None
        and not records.empty
        and ra is not None
        and rb is not None
        and ra.get("data_sha256") == rb.get("data_sha256")
    )
    if paired:
        assert records is not None and ra is not None and rb is not None
        ca, cb = _cell_records(records, ra), _cell_records(records, rb)
        if not ca.empty and not cb.empty:
            if metric.startswith("success_rate"):
                column = "success_at_eps" if metric.endswith("_at_eps") else "success"
                both = matched(ca, cb, column)
                return "mcnemar", float(mcnemar(both["broken_a"], both["broken_b"])["p_value"])
            if metric in RATE_METRICS:
                both = pd.concat([_outcome(ca, metric), _outcome(cb, metric)], axis=1, join="inner")
                return "mcnemar", float(mcnemar(both.iloc[:, 0], both.iloc[:, 1])["p_value"])
            norm = metric.split("_", 1)[1]
            norm = str(ra.get("norm")) if norm == "norm" else norm
            if norm in ca.columns:
                pa = ca.drop_duplicates(present(ca, SAMPLE_KEYS)).set_index(present(ca, SAMPLE_KEYS))
                pb = cb.drop_duplicates(present(cb, SAMPLE_KEYS)).set_index(present(cb, SAMPLE_KEYS))
                j = pa[["correct", "success", norm]].join(
                    pb[["correct", "success", norm]], how="inner", lsuffix="_a", rsuffix="_b"
                )
                both_broken = j["correct_a"] & j["correct_b"] & j["success_a"] & j["success_b"]
                j = j[both_broken.astype(bool)]
                res = paired_distance_test(j[f"{norm}_a"], j[f"{norm}_b"])
                return "wilcoxon", float(res["p_value"])
    if a.n is not None and b.n is not None and a.k is not None and b.k is not None:
        res = compare_rates(a.k, a.n, b.k, b.n)
        return str(res["test"]), float(res["p_value"])
    return "", float("nan")


def _row(e: Expectation, i: int, **values: Any) -> dict[str, Any]:
    published = {
        "value": lambda: f"{_num(e.value or 0.0)} ± {_num(e.tolerance or 0.0)}",
        "equal_across": lambda: f"equal across {e.equal_across} (± {_num(e.tolerance or 0.0)})",
        "order": lambda: (" > " if e.direction == "decreasing" else " < ").join(
            selector_text(s) for s in e.order or []
        ),
        "greater_than": lambda: f"larger than {selector_text(e.greater_than or {})}",
    }[e.kind]()
    row: dict[str, Any] = dict.fromkeys(COLUMNS, float("nan"))
    row.update(
        expectation=i,
        kind=e.kind,
        metric=e.metric,
        where=selector_text(e.where),
        published=published,
        measured="",
        evidence="",
        source=e.source,
        note=e.note or "",
        published_value=float("nan") if e.value is None else e.value,
        tolerance=float("nan") if e.tolerance is None else e.tolerance,
        test="",
        n_cells=0,
    )
    row.update(values)
    return row


def _check_value(e: Expectation, i: int, m: Measurement) -> dict[str, Any]:
    assert e.value is not None and e.tolerance is not None
    diff = m.value - e.value
    ok = abs(diff) <= e.tolerance + 1e-12
    evidence = f"|measured - published| = {abs(diff):.4g} {'<=' if ok else '>'} tolerance {e.tolerance:g}"
    if m.n is not None:
        inside = m.ci_low - e.tolerance <= e.value <= m.ci_high + e.tolerance
        evidence += (
            f"; published {'inside' if inside else 'outside'} the 95% interval "
            f"[{_num(m.ci_low)}, {_num(m.ci_high)}] widened by the tolerance"
        )
    return _row(
        e,
        i,
        measured=m.text(),
        verdict="PASS" if ok else "DIFFERS",
        evidence=evidence,
        measured_value=m.value,
        ci_low=m.ci_low,
        ci_high=m.ci_high,
        difference=diff,
        n_cells=len(m.rows),
    )


def _check_equal(
    e: Expectation, i: int, summary: pd.DataFrame, records: pd.DataFrame | None
) -> dict[str, Any]:
    assert e.equal_across is not None and e.tolerance is not None
    col = e.equal_across
    rows, why = select(summary, e.where)
    if why is not None:
        return _row(e, i, verdict="NOT RUN", evidence=why)
    if col not in rows.columns:
        return _row(e, i, verdict="NOT RUN", evidence=f"the results have no column {col!r}")
    groups: dict[str, Measurement] = {}
    for value in dict.fromkeys(rows[col].tolist()):
        m = measure(summary, {**e.where, col: value}, e.metric)
        if isinstance(m, Measurement):
            groups[str(value)] = m
    if len(groups) < 2:
        only = ", ".join(groups) or "none"
        return _row(
            e,
            i,
            verdict="NOT RUN",
            evidence=f"one {col} only among the ok rows of {selector_text(e.where)} ({only})",
        )
    values = {g: m.value for g, m in groups.items()}
    spread = max(values.values()) - min(values.values())
    ok = spread <= e.tolerance + 1e-12
    tests = [(pair_test(groups[x], groups[y], e.metric, records), x, y) for x, y in combinations(groups, 2)]
    tested = [t for t in tests if t[0][0]]
    evidence = f"max |difference| = {spread:.4g} {'<=' if ok else '>'} tolerance {e.tolerance:g}"
    test, p = "", float("nan")
    if tested:
        (test, p), x, y = min(tested, key=lambda t: t[0][1])
        evidence += f"; smallest p over {len(tested)} pair(s): {test} p={p:.3g} ({x} vs {y})"
    return _row(
        e,
        i,
        measured=", ".join(f"{g} {_num(v)}" for g, v in values.items()),
        verdict="PASS" if ok else "DIFFERS",
        evidence=evidence,
        measured_value=spread,
        difference=spread,
        test=test,
        p_value=p,
        n_cells=sum(len(m.rows) for m in groups.values()),
    )


def _check_steps(
    e: Expectation, i: int, summary: pd.DataFrame, records: pd.DataFrame | None
) -> dict[str, Any]:
    """``order`` and ``greater_than``: every step strictly in the stated direction."""
    sides = e.sides()
    if e.order is not None:
        labels = [selector_text(s) for s in e.order]
    else:
        labels = [selector_text(e.where), selector_text(e.greater_than or {})]
    found: list[Measurement] = []
    for label, s in zip(labels, sides, strict=True):
        m = measure(summary, s, e.metric)
        if isinstance(m, str):
            return _row(e, i, verdict="NOT RUN", evidence=f"{label}: {m}")
        found.append(m)
    decreasing = e.direction != "increasing"  # greater_than: the first side is the larger
    steps, bad, worst = [], [], ("", float("nan"))
    for (la, a), (lb, b) in pairwise(zip(labels, found, strict=True)):
        holds = a.value > b.value if decreasing else a.value < b.value
        test, p = pair_test(a, b, e.metric, records)
        sign = ">" if a.value > b.value else "<" if a.value < b.value else "="
        steps.append(
            f"{la} {_num(a.value)} {sign} {lb} {_num(b.value)}" + (f" ({test} p={p:.3g})" if test else "")
        )
        if not holds:
            bad.append(f"{la} vs {lb}")
        if test and (math.isnan(worst[1]) or p > worst[1]):  # the least significant step
            worst = (test, p)
    evidence = "; ".join(steps)
    if bad:
        broken = "not larger" if e.order is None else f"not {e.direction} at {', '.join(bad)}"
        evidence = f"{broken}: {evidence}"
    measured = _num(found[0].value)
    for a, b in pairwise(found):
        measured += f" {'>' if a.value > b.value else '<' if a.value < b.value else '='} {_num(b.value)}"
    return _row(
        e,
        i,
        measured=measured,
        verdict="DIFFERS" if bad else "PASS",
        evidence=evidence,
        measured_value=found[0].value,
        difference=found[0].value - found[1].value if len(found) == 2 else float("nan"),
        test=worst[0],
        p_value=worst[1],
        n_cells=sum(len(m.rows) for m in found),
    )


def check_expectations(
    summary: pd.DataFrame,
    records: pd.DataFrame | None,
    expectations: Sequence[Expectation | Mapping[str, Any]],
) -> pd.DataFrame:
    """One row per expectation (:data:`COLUMNS`): what was published, what was measured,
    ``verdict`` (PASS / DIFFERS / NOT RUN), the ``evidence`` and the ``source``; mappings
    are validated as :class:`~advharness.config.expect.Expectation` first."""
    rows = []
    for i, raw in enumerate(expectations):
        e = raw if isinstance(raw, Expectation) else Expectation.model_validate(raw)
        if e.kind == "value":
            m = measure(summary, e.where, e.metric)
            rows.append(
                _row(e, i, verdict="NOT RUN", evidence=m) if isinstance(m, str) else _check_value(e, i, m)
            )
        elif e.kind == "equal_across":
            rows.append(_check_equal(e, i, summary, records))
        else:
            rows.append(_check_steps(e, i, summary, records))
    return pd.DataFrame(rows, columns=list(COLUMNS))
