"""Curves from :mod:`advharness.analytics`: robust accuracy against eps
(:func:`~advharness.analytics.security_curves`, with its Wilson band) and the distance CDFs
of the minimum-norm cells (:func:`~advharness.analytics.per_sample_distances`,
:func:`~advharness.analytics.distance_cdf`). One panel per model and norm; the report draws,
it computes no statistic of its own."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from advharness.analytics import distance_cdf, per_sample_distances, security_curves
from advharness.analytics.curves import POINT_COLUMNS
from advharness.reporting.report.base import Fragment, Image, ReportContext, figure
from advharness.reporting.report.figures import colours, new_figure, style_axes, to_png

#: At most this many panels per figure (the rest are counted in the caption).
MAX_PANELS = 12
#: At most this many lines per panel (the rest are counted in the caption).
MAX_LINES = 24
#: Columns that identify a line's model and norm (its panel) or are drawn, not labelled.
_PANEL = ("model", "norm")
_NOT_LABELS = (
    *_PANEL,
    "library",
    "attack",
    "framework",
    "kind",
    *POINT_COLUMNS,
    "radius",
    "cdf",
    "data_sha256",
)


def line_label(ident: dict[str, Any], varying: Sequence[str]) -> str:
    """``attack library (framework)`` and the identity columns that vary (``steps=10``...)."""
    head = f"{ident.get('attack')} {ident.get('library')} ({ident.get('framework')})"
    extra = [f"{c}={ident[c]}" for c in varying if c in ident and not _missing(ident[c])]
    return " ".join([head, *extra])


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))


def varying_columns(frame: pd.DataFrame, line_keys: Sequence[str]) -> list[str]:
    """The line keys (but those in every label) that take more than one value."""
    return [
        c
        for c in line_keys
        if c not in _NOT_LABELS and frame[c].map(lambda v: None if _missing(v) else str(v)).nunique() > 1
    ]


def _panels(frame: pd.DataFrame) -> list[tuple[tuple[Any, ...], pd.DataFrame]]:
    return [
        (k if isinstance(k, tuple) else (k,), g)
        for k, g in frame.groupby(list(_PANEL), sort=False, dropna=False)
    ]


def _lines(panel: pd.DataFrame, keys: list[str]) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    out = []
    for k, g in panel.groupby(keys, sort=False, dropna=False):
        vals = k if isinstance(k, tuple) else (k,)
        out.append((dict(zip(keys, vals, strict=True)), g))
    return out


def _dashes(panel: pd.DataFrame) -> dict[str, str]:
    """A line style per attack of a panel (solid, dashed, dotted, dash-dotted, in turn)."""
    styles = ("-", "--", ":", "-.")
    return {a: styles[i % len(styles)] for i, a in enumerate(dict.fromkeys(panel["attack"].astype(str)))}


def _notes(n_panels: int, capped_lines: int) -> str:
    out = ""
    if n_panels > MAX_PANELS:
        out += f" Only the first {MAX_PANELS} of {n_panels} panels are shown."
    if capped_lines:
        out += f" {capped_lines} lines beyond {MAX_LINES} per panel are not drawn."
    return out


def build_security_curves(ctx: ReportContext) -> Fragment:
    """Robust accuracy against eps, one line per curve of ``security_curves`` (model,
    attack, library, framework and the settings that vary), its Wilson interval as a band;
    one panel per model and norm."""
    if ctx.summary.empty:
        return Fragment.unavailable("the results directory holds no cells")
    summary = ctx.summary
    curves = security_curves(summary, ctx.records if len(ctx.records) else None)
    if curves.empty or not (curves["point"] != "clean").any():
        return Fragment.unavailable("no cell ran (no ok row with an eps or per-sample norms)")
    line_keys = [c for c in curves.columns if c not in POINT_COLUMNS]
    varying = varying_columns(curves, line_keys)
    panels = _panels(curves)
    fig, axes = new_figure(min(len(panels), MAX_PANELS))
    col = colours(ctx.libraries)
    capped = 0
    for ax, ((model, norm), panel) in zip(axes, panels, strict=False):
        lines = [(i, g) for i, g in _lines(panel, line_keys) if (g["point"] != "clean").any()]
        capped += max(0, len(lines) - MAX_LINES)
        dashes = _dashes(panel)
        for ident, g in lines[:MAX_LINES]:
            g = g.sort_values("eps", kind="stable")
            step: Literal["post"] | None = "post" if (g["point"] == "norms").any() else None
            colour = col.get(str(ident.get("library")), "k")
            x, y = g["eps"].to_numpy(float), g["robust_accuracy"].to_numpy(float)
            lo, hi = g["ci_low"].to_numpy(float), g["ci_high"].to_numpy(float)
            style = {"color": colour, "lw": 1.2, "ls": dashes[str(ident.get("attack"))]}
            if step:
                ax.step(x, y, where="post", label=line_label(ident, varying), **style)
            else:
                ax.plot(x, y, marker="o", ms=3, label=line_label(ident, varying), **style)
            if np.isfinite(lo).any():
                ax.fill_between(x, lo, hi, color=colour, alpha=0.12, step=step, lw=0)
        style_axes(ax, f"{model} ({norm})", f"eps ({norm})", "robust accuracy", min(len(lines), MAX_LINES))
    caption = (
        "Robust accuracy against eps from security_curves: each line starts at the clean "
        "accuracy (eps 0); fixed-budget cells are points at their eps, minimum-norm cells a "
        "step curve from their per-sample norms; the band is the Wilson 95% interval "
        "(ci_low, ci_high). Colour: library; line style: attack; one panel per model and norm."
        + _notes(len(panels), capped)
    )
    return figure(Image("security-curves", to_png(fig), "robust accuracy against eps"), caption)


def minimum_norm_distances(ctx: ReportContext) -> pd.DataFrame:
    """``per_sample_distances`` of the ok cells (minimum-norm cells and per-sample eps
    searches; fixed-budget cells are left out)."""
    if ctx.records.empty:
        return pd.DataFrame()
    return per_sample_distances(ctx.records, ctx.summary)


NO_DISTANCES = "no minimum-norm cell (nor per-sample eps search) with per-sample records"


def build_distance_cdfs(ctx: ReportContext) -> Fragment:
    """The empirical CDF of each minimum-norm cell's per-sample distances (``distance_cdf``),
    one line per (attack, library, framework, settings), one panel per model and norm."""
    distances = minimum_norm_distances(ctx)
    if distances.empty:
        return Fragment.unavailable(NO_DISTANCES)
    cdfs = distance_cdf(distances)
    line_keys = [c for c in cdfs.columns if c not in ("radius", "cdf", "robust_accuracy", "n", "cell_key")]
    varying = varying_columns(cdfs, line_keys)
    panels = _panels(cdfs)
    fig, axes = new_figure(min(len(panels), MAX_PANELS))
    col = colours(ctx.libraries)
    capped = 0
    for ax, ((model, norm), panel) in zip(axes, panels, strict=False):
        lines = _lines(panel, [*line_keys, "cell_key"])
        capped += max(0, len(lines) - MAX_LINES)
        dashes = _dashes(panel)
        for ident, g in lines[:MAX_LINES]:
            g = g.sort_values("radius", kind="stable")
            colour = col.get(str(ident.get("library")), "k")
            label = line_label(ident, varying)
            ax.step(
                g["radius"],
                g["cdf"],
                where="post",
                color=colour,
                lw=1.2,
                ls=dashes[str(ident.get("attack"))],
                label=label,
            )
        style_axes(
            ax,
            f"{model} ({norm})",
            f"perturbation size ({norm})",
            "share of samples",
            min(len(lines), MAX_LINES),
        )
    caption = (
        "Empirical CDF of the smallest perturbation each minimum-norm cell found per sample "
        "(per_sample_distances, distance_cdf): misclassified samples count at 0, samples "
        "never broken never enter; 1 - cdf is the security curve. Colour: library; line style: "
        "attack; one panel per model and norm." + _notes(len(panels), capped)
    )
    return figure(Image("distance-cdfs", to_png(fig), "distance CDFs of minimum-norm cells"), caption)
