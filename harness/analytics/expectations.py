"""Published vs measured: each expectation of an experiment (``expect:``, see
:mod:`advharness.config.expect`) checked against a run's summary and records.

What one side measures (a pooled rate with its interval at the distinct samples' ``n``, a
worst case, ``local_optimality``, or a mean) is :mod:`advharness.analytics.measurement`.

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

Tests between two sides: :func:`advharness.analytics.measurement.pair_test` (McNemar's
on paired per-sample outcomes, Wilcoxon's on paired distances, else the two-proportion test).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import combinations, pairwise
from typing import Any

import pandas as pd

from advharness.analytics.measurement import (
    Measurement,
    RunData,
    measure,
    num,
    pair_test,
    select,
    selector_text,
)
from advharness.config.expect import Expectation

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


def _row(e: Expectation, i: int, **values: Any) -> dict[str, Any]:
    published = {
        "value": lambda: f"{num(e.value or 0.0)} ± {num(e.tolerance or 0.0)}",
        "equal_across": lambda: f"equal across {e.equal_across} (± {num(e.tolerance or 0.0)})",
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
            f"[{num(m.ci_low)}, {num(m.ci_high)}] widened by the tolerance"
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


def _check_equal(e: Expectation, i: int, data: RunData) -> dict[str, Any]:
    assert e.equal_across is not None and e.tolerance is not None
    col = e.equal_across
    rows, why = select(data.summary, e.where)
    if why is not None:
        return _row(e, i, verdict="NOT RUN", evidence=why)
    if col not in rows.columns:
        return _row(e, i, verdict="NOT RUN", evidence=f"the results have no column {col!r}")
    groups: dict[str, Measurement] = {}
    for value in dict.fromkeys(rows[col].tolist()):
        m = measure(data, {**e.where, col: value}, e.metric)
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
    tests = [(pair_test(data, groups[x], groups[y], e.metric), x, y) for x, y in combinations(groups, 2)]
    tested = [t for t in tests if t[0][0]]
    evidence = f"max |difference| = {spread:.4g} {'<=' if ok else '>'} tolerance {e.tolerance:g}"
    test, p = "", float("nan")
    if tested:
        (test, p), x, y = min(tested, key=lambda t: t[0][1])
        evidence += f"; smallest p over {len(tested)} pair(s): {test} p={p:.3g} ({x} vs {y})"
    return _row(
        e,
        i,
        measured=", ".join(f"{g} {num(v)}" for g, v in values.items()),
        verdict="PASS" if ok else "DIFFERS",
        evidence=evidence,
        measured_value=spread,
        difference=spread,
        test=test,
        p_value=p,
        n_cells=sum(len(m.rows) for m in groups.values()),
    )


def _check_steps(e: Expectation, i: int, data: RunData) -> dict[str, Any]:
    """``order`` and ``greater_than``: every step strictly in the stated direction."""
    sides = e.sides()
    if e.order is not None:
        labels = [selector_text(s) for s in e.order]
    else:
        labels = [selector_text(e.where), selector_text(e.greater_than or {})]
    found: list[Measurement] = []
    for label, s in zip(labels, sides, strict=True):
        m = measure(data, s, e.metric)
        if isinstance(m, str):
            return _row(e, i, verdict="NOT RUN", evidence=f"{label}: {m}")
        found.append(m)
    decreasing = e.direction != "increasing"  # greater_than: the first side is the larger
    steps, bad, worst = [], [], ("", float("nan"))
    for (la, a), (lb, b) in pairwise(zip(labels, found, strict=True)):
        holds = a.value > b.value if decreasing else a.value < b.value
        test, p = pair_test(data, a, b, e.metric)
        sign = ">" if a.value > b.value else "<" if a.value < b.value else "="
        steps.append(
            f"{la} {num(a.value)} {sign} {lb} {num(b.value)}" + (f" ({test} p={p:.3g})" if test else "")
        )
        if not holds:
            bad.append(f"{la} vs {lb}")
        if test and (math.isnan(worst[1]) or p > worst[1]):  # the least significant step
            worst = (test, p)
    evidence = "; ".join(steps)
    if bad:
        broken = "not larger" if e.order is None else f"not {e.direction} at {', '.join(bad)}"
        evidence = f"{broken}: {evidence}"
    measured = num(found[0].value)
    for a, b in pairwise(found):
        measured += f" {'>' if a.value > b.value else '<' if a.value < b.value else '='} {num(b.value)}"
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
    data = RunData(summary, records)
    rows = []
    for i, raw in enumerate(expectations):
        e = raw if isinstance(raw, Expectation) else Expectation.model_validate(raw)
        if e.kind == "value":
            m = measure(data, e.where, e.metric)
            rows.append(
                _row(e, i, verdict="NOT RUN", evidence=m) if isinstance(m, str) else _check_value(e, i, m)
            )
        elif e.kind == "equal_across":
            rows.append(_check_equal(e, i, data))
        else:
            rows.append(_check_steps(e, i, data))
    return pd.DataFrame(rows, columns=list(COLUMNS))
