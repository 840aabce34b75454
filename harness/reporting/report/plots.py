"""Plots over the summary and the records: wall time against success, and the query
efficiency of black-box cells."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from advharness.reporting.report.base import Fragment, Image, ReportContext, figure, table
from advharness.reporting.report.figures import colours, log_x, new_figure, style_axes, to_png

#: At most this many panels per plot (the rest are counted in the caption).
MAX_PANELS = 12
#: Points of a time-against-success panel are labelled with their attack up to this many.
MAX_POINT_LABELS = 24
#: Threat models whose cells count queries per sample.
BLACK_BOX = ("score-based", "decision-based")


def shown_rate(rows: pd.DataFrame) -> pd.Series:
    """The success rate a row reports: at its eps for a minimum-norm cell given one, else
    ``success_rate`` (as the head-to-head table shows it)."""
    rate = pd.to_numeric(rows["success_rate"], errors="coerce")
    if "success_rate_at_eps" in rows and "kind" in rows:
        at_eps = pd.to_numeric(rows["success_rate_at_eps"], errors="coerce")
        use = (rows["kind"] == "minimal") & at_eps.notna()
        rate = rate.where(~use, at_eps)
    return rate


def _omitted(total: int, shown: int, what: str) -> str:
    return "" if total <= shown else f" Only the first {shown} of {total} {what} are shown."


def build_time_vs_success(ctx: ReportContext) -> Fragment:
    """One scatter panel per (model, threat model): each cell's wall time against its
    success rate, coloured by library."""
    s = ctx.summary
    if s.empty or "time_s" not in s:
        return Fragment.unavailable("no cell has a wall time")
    ok = s[(s["status"] == "ok") & pd.to_numeric(s["time_s"], errors="coerce").gt(0)]
    if ok.empty:
        return Fragment.unavailable("no cell ran (no ok row with a wall time)")
    ok = ok.assign(rate=shown_rate(ok), threat=ok.get("threat_model", "white-box"))
    groups = list(ok.groupby(["model", "threat"], sort=False))
    fig, axes = new_figure(min(len(groups), MAX_PANELS))
    col = colours(ctx.libraries)
    for ax, ((model, threat), g) in zip(axes, groups, strict=False):
        for lib, gl in g.groupby("library", sort=False):
            ax.scatter(gl["time_s"], gl["rate"], s=26, alpha=0.8, color=col[str(lib)], label=str(lib))
        if len(g) <= MAX_POINT_LABELS:
            for t, r, a in zip(g["time_s"], g["rate"], g["attack"], strict=True):
                ax.annotate(str(a), (t, r), fontsize=6, xytext=(3, 3), textcoords="offset points")
        log_x(ax)
        style_axes(
            ax, f"{model} ({threat})", "wall time of the library calls (s)", "success rate", 0, legend_size=7
        )
    caption = (
        "Each point is one table row: x = time_s (log scale), y = success_rate (minimum-norm "
        "rows with an eps: success_rate_at_eps); one panel per model and threat model."
        + _omitted(len(groups), MAX_PANELS, "panels")
    )
    return figure(Image("time-vs-success", to_png(fig), "wall time against success rate"), caption)


def level_columns(columns: Any) -> dict[int, str]:
    """``{L: "success_at_q<L>"}`` for the summary's query-level columns, by level."""
    found = (re.fullmatch(r"success_at_q(\d+)", str(c)) for c in columns)
    return dict(sorted((int(m.group(1)), m.group(0)) for m in found if m))


def _levels(rows: pd.DataFrame, columns: dict[int, str]) -> dict[int, float]:
    """``{L: mean success_at_q<L>}`` over ``rows`` (levels with a value only)."""
    means = {q: pd.to_numeric(rows[c], errors="coerce").mean() for q, c in columns.items()}
    return {q: float(v) for q, v in means.items() if not pd.isna(v)}


def _curve(recs: pd.DataFrame, end: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The step curve of the share of attacked samples with ``first_success_query <= q``."""
    if recs.empty or "first_success_query" not in recs:
        return None
    attacked = recs[recs["correct"].astype(bool)]
    if attacked.empty:
        return None
    first = np.sort(pd.to_numeric(attacked["first_success_query"], errors="coerce").dropna().to_numpy())
    share = np.arange(1, len(first) + 1) / len(attacked)
    xs = np.concatenate([[1.0], first, [max(end, first[-1] if len(first) else 1.0)]])
    ys = np.concatenate([[0.0], share, [share[-1] if len(share) else 0.0]])
    return xs, ys


def build_query_efficiency(ctx: ReportContext) -> Fragment:
    """Success against queries for the black-box cells: one panel per table row and model,
    one step curve per library, and a table of the ``success_at_q<L>`` columns."""
    s = ctx.summary
    if s.empty or "threat_model" not in s:
        return Fragment.unavailable("no black-box (score- or decision-based) cell in these results")
    bb = s[s["threat_model"].isin(BLACK_BOX) & (s["status"] == "ok")]
    if bb.empty:
        return Fragment.unavailable("no black-box (score- or decision-based) cell ran")
    bb = bb.drop_duplicates("cell_key")
    bb = bb.assign(setting=[ctx.key_labels[str(k)] for k in bb["cell_key"]])
    samples = ctx.samples
    groups = list(bb.groupby(["setting", "model"], sort=False))
    fig, axes = new_figure(min(len(groups), MAX_PANELS))
    col = colours(ctx.libraries)
    columns = level_columns(bb.columns)
    level_rows: list[tuple[Any, ...]] = []
    all_levels: set[int] = set()
    for i, ((setting, model), g) in enumerate(groups):
        for lib, gl in g.groupby("library", sort=False):
            levels = _levels(gl, columns)
            all_levels |= set(levels)
            level_rows.append((setting, model, lib, levels))
            if i >= MAX_PANELS:
                continue
            ax = axes[i]
            end = max(_top(gl, "budget"), _top(gl, "queries_max"), 1.0)
            recs = samples[samples["cell_key"].isin(gl["cell_key"])] if len(samples) else samples
            curve = _curve(recs, end)
            if curve is None and levels:  # no per-sample records: the summary's levels
                curve = (np.array([1.0, *levels]), np.array([0.0, *levels.values()]))
            if curve is not None:
                ax.step(*curve, where="post", color=col[str(lib)], label=str(lib))
            if levels and _exact_levels(gl):
                ax.plot(list(levels), list(levels.values()), "o", color=col[str(lib)], ms=4)
        if i < MAX_PANELS:
            ax = axes[i]
            log_x(ax)
            style_axes(
                ax,
                f"{setting}\n{model}",
                "queries per sample",
                "share with a valid adversarial",
                0,
                legend_size=7,
                title_size=8,
            )
    caption = (
        "Share of the attacked (initially correct) samples with a valid adversarial within q "
        "queries, from the records' first_success_query (pooled over seeds); dots: the "
        "summary's success_at_q<L> (fixed-budget rows and minimum-norm rows without a radius)."
        + _omitted(len(groups), MAX_PANELS, "panels")
    )
    out = figure(Image("query-efficiency", to_png(fig), "success against queries"), caption)
    if all_levels:
        qs = sorted(all_levels)
        rows = [(st, m, lib, *(lv.get(q, float("nan")) for q in qs)) for st, m, lib, lv in level_rows]
        header = ["setting", "model", "library", *(f"<= {q} q" for q in qs)]
        out.extend(table(header, rows, latex="query-levels"))
    return out


def _top(rows: pd.DataFrame, col: str) -> float:
    """The largest value of a numeric column (0 where absent or all missing)."""
    if col not in rows:
        return 0.0
    top = pd.to_numeric(rows[col], errors="coerce").max()
    return 0.0 if pd.isna(top) else float(top)


def _exact_levels(rows: pd.DataFrame) -> bool:
    """Whether the rows' ``success_at_q<L>`` count any valid adversarial (the curve's
    quantity): fixed-budget cells, and minimum-norm cells reported without a radius."""
    kind = rows["kind"] if "kind" in rows else pd.Series("fixed", index=rows.index)
    eps = pd.to_numeric(rows["eps"], errors="coerce") if "eps" in rows else pd.Series(np.nan, rows.index)
    return bool(((kind != "minimal") | eps.isna()).all())
