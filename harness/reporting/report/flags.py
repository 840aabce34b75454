"""Every flag the summary carries, with its rule and the rows it concerns: gradient masking
(``beats_white_box``), low clean accuracy, violations, invalid outputs, failed and
unsupported cells (their reasons)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from advharness.reporting.report.base import Fragment, ReportContext, heading, paragraph, table

#: At most this many rows are listed per flag (all of them are in summary.csv).
MAX_ROWS = 100
FAILED = ("error", "timeout", "crashed")
INVALID = ("n_eps_violations", "n_box_violations", "n_degenerate", "n_nonfinite")
UNSUPPORTED_RULE = (
    "status unsupported: the library lacks the combination, or it is broken in the installed "
    "version; reason says which."
)


@dataclass(frozen=True)
class Flag:
    """A flag: its name, the rule that raises it, the rows it selects, the columns shown."""

    name: str
    rule: str
    select: Callable[[pd.DataFrame], pd.Series]
    columns: tuple[str, ...]


def _col(s: pd.DataFrame, name: str) -> pd.Series:
    return s[name] if name in s else pd.Series(None, index=s.index, dtype=object)


def _count(s: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(_col(s, name), errors="coerce").fillna(0)


FLAGS = (
    Flag(
        "beats_white_box",
        "a black-box cell whose success at eps (success_rate_at_eps) beats every white-box "
        "cell on the same model, norm, eps and targeting: a classic sign of gradient masking "
        '("masking?" in the table).',
        lambda s: _col(s, "beats_white_box").fillna(False).astype(bool),
        ("threat_model", "success_rate_at_eps"),
    ),
    Flag(
        "low_clean_accuracy",
        "the model classifies fewer than clean_accuracy_floor of the clean inputs correctly: "
        "the success rate is over a handful of samples (a wrong data scale, layout or weights?).",
        lambda s: _col(s, "low_clean_accuracy").fillna(False).astype(bool),
        ("clean_accuracy", "clean_accuracy_floor", "n_correct"),
    ),
    Flag(
        "violation",
        "status violation: a black-box attack asked for gradients (the query-only oracle "
        "refused them); reason says which call.",
        lambda s: s["status"] == "violation",
        ("threat_model", "reason"),
    ),
    Flag(
        "invalid outputs",
        "outputs the referee refused: outside the eps-ball of a fixed-budget attack "
        "(n_eps_violations), outside the box (n_box_violations), constant images from "
        "non-constant inputs (n_degenerate), NaN or inf (n_nonfinite); never successes.",
        lambda s: sum((_count(s, c) > 0 for c in INVALID), pd.Series(False, index=s.index)).astype(bool),
        (*INVALID, "n_fooled_invalid"),
    ),
    Flag(
        "failed",
        "status error (an exception, or outputs with NaN/inf), timeout (past time_limit_s) "
        "or crashed (the worker died): reason says why; advharness show DIR --cell KEY "
        "prints the traceback.",
        lambda s: s["status"].isin(FAILED),
        ("status", "reason"),
    ),
)
IDENTITY = ("cell", "setting", "model", "library", "framework", "run_seed", "cell_key")


def build_sanity_checks(ctx: ReportContext) -> Fragment:
    """Every evaluation sanity check that fired (its rule, threshold, source and the cells
    concerned), then the models' probes; quiet on a sound evaluation."""
    if ctx.summary.empty:
        return Fragment.unavailable("the results directory holds no cells")
    checks = ctx.checks
    if checks.empty:
        out = paragraph("No sanity check fired (the checks and their rules: docs/analytics.md).")
    else:
        labels = ctx.key_labels
        rows = [
            (
                r["check"],
                r["severity"],
                r["message"],
                "; ".join(labels.get(str(k), str(k)[:12]) for k in r["cell_keys"]),
                r["rule"],
                r["threshold"],
                r["source"],
            )
            for _, r in checks.head(MAX_ROWS).iterrows()
        ]
        out = table(["check", "severity", "finding", "cells", "rule", "threshold", "source"], rows)
        if len(checks) > MAX_ROWS:
            out.extend(paragraph(f"... and {len(checks) - MAX_ROWS} more flags."))
    probes = getattr(ctx.result, "probes", None)
    if probes is not None and len(probes):
        out.extend(heading("Model probes"))
        cols = ["model", "probe", "flagged", "value", "threshold", "rule", "source"]
        out.extend(table(cols, probes[cols].values.tolist(), css="flags"))
    return out


def build_flags(ctx: ReportContext) -> Fragment:
    """A table of the flags and their counts, then each raised flag's rule and rows, and
    the unsupported cells grouped by reason."""
    s = ctx.summary
    if s.empty:
        return Fragment.unavailable("the results directory holds no cells")
    s = s.assign(setting=ctx.labels.to_numpy(), cell_key=s["cell_key"].astype(str).str[:12])
    unsupported = s[s["status"] == "unsupported"]
    selected = [(f, s[f.select(s).to_numpy()]) for f in FLAGS]
    counts = [(f.name, len(rows), f.rule) for f, rows in selected]
    counts.append(("unsupported", len(unsupported), UNSUPPORTED_RULE))
    out = table(["flag", "rows", "rule"], counts, css="flags")
    for flag, rows in selected:
        if rows.empty:
            continue
        out.extend(heading(f"{flag.name} ({len(rows)} rows)"))
        cols = [c for c in (*IDENTITY, *flag.columns) if c in rows]
        listed = rows[cols].head(MAX_ROWS)
        if "reason" in listed:
            listed = listed.assign(reason=listed["reason"].astype(str).str.split("\n").str[0])
        out.extend(table(cols, listed.values.tolist()))
        if len(rows) > MAX_ROWS:
            out.extend(paragraph(f"... and {len(rows) - MAX_ROWS} more rows (see summary.csv)."))
    if len(unsupported):
        out.extend(heading(f"unsupported ({len(unsupported)} rows)"))
        out.extend(_unsupported(unsupported))
    return out


def _unsupported(rows: pd.DataFrame) -> Fragment:
    """The unsupported rows grouped by reason: how many, and where."""
    listed = []
    for reason, g in rows.groupby(rows["reason"].astype(str), sort=False):
        where = list(dict.fromkeys(f"{r.library}/{r.framework} {r.attack} {r.norm}" for r in g.itertuples()))
        more = f" and {len(where) - 10} more" if len(where) > 10 else ""
        listed.append((reason, len(g), ", ".join(where[:10]) + more))
    return table(["reason", "rows", "where (library/framework attack norm)"], listed)
