"""The head-to-head tables, rendered by :mod:`advharness.reporting.render` (the same rows
as ``advharness show``): one table per threat model when the results mix several."""

from __future__ import annotations

import re

from advharness.reporting.render import LEGEND, to_html, to_latex, to_markdown
from advharness.reporting.report.base import Fragment, ReportContext, heading, paragraph
from advharness.reporting.tables import table_rows


def build_head_to_head(ctx: ReportContext) -> Fragment:
    """One head-to-head table per threat model (white-box, score-based, decision-based,
    transfer), each also as LaTeX (``head-to-head-<threat model>.tex``)."""
    s = ctx.summary
    if s.empty:
        return Fragment.unavailable("the results directory holds no cells")
    threat = s["threat_model"].fillna("white-box") if "threat_model" in s else None
    parts = [("", s)] if threat is None or threat.nunique() == 1 else list(s.groupby(threat, sort=False))
    out = Fragment("", "")
    for name, part in parts:
        stem = "head-to-head" + (f"-{re.sub(r'[^A-Za-z0-9]+', '-', str(name))}" if name else "")
        if name:
            out.extend(heading(str(name)))
        rows = table_rows(part)  # once for the three formats
        out.extend(
            Fragment(
                f'<div class="scroll">{to_html(part, checks=ctx.checks, rows=rows)}</div>\n',
                to_markdown(part, checks=ctx.checks, rows=rows) + "\n",
                latex={stem: to_latex(part, checks=ctx.checks, rows=rows)},
            )
        )
    out.extend(paragraph(LEGEND, css="legend"))
    return out
