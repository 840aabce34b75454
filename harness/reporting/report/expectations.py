"""The report's "Published vs measured" section: the expectations of the run's experiment
(``expect:``) checked against its results
(:func:`~advharness.analytics.expectations.check_expectations`)."""

from __future__ import annotations

from advharness.reporting.compare import expectations_of, expectations_table
from advharness.reporting.report.base import Fragment, ReportContext, paragraph, table


def build_expectations(ctx: ReportContext) -> Fragment:
    """One row per expectation: published, measured, verdict, evidence, source."""
    if not ctx.manifest:
        return Fragment.unavailable("no manifest.json (the experiment and its expect: entries are unknown)")
    if not ctx.manifest.get("experiment", {}).get("expect"):
        return Fragment.unavailable("the experiment has no expect: entries (see docs/experiments.md)")
    found = expectations_table(ctx.result, expectations_of(ctx.result))
    cols = ["metric", "where", "published", "measured", "verdict", "evidence", "source"]
    out = table(cols, found[cols].values.tolist(), latex="published-vs-measured")
    counts = found["verdict"].value_counts()
    out.extend(
        paragraph(
            ", ".join(f"{counts.get(v, 0)} {v}" for v in ("PASS", "DIFFERS", "NOT RUN"))
            + ". A rate is pooled over the rows its selector picks, with its Wilson 95% interval; "
            "PASS for a figure: within the tolerance of the measurement; for an order or a gap: every "
            "step strictly the stated way (the tests' p-values are in the evidence). "
            "See docs/reproductions.md.",
            css="legend",
        )
    )
    return out
