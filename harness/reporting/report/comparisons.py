"""Comparison tables from :mod:`advharness.analytics`: the AttackBench optimality of the
minimum-norm cells (:func:`~advharness.analytics.local_optimality`,
:func:`~advharness.analytics.global_optimality`), the agreement between libraries
(:func:`~advharness.analytics.library_agreement`) and the worst case over libraries and over
attacks (:func:`~advharness.analytics.best_implementation`,
:func:`~advharness.analytics.ensemble_robust_accuracy`,
:func:`~advharness.analytics.pairwise_complementarity`). The report sorts, formats and
draws; every number comes from those functions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from advharness.analytics import (
    best_implementation,
    ensemble_robust_accuracy,
    global_optimality,
    library_agreement,
    local_optimality,
    pairwise_complementarity,
)
from advharness.reporting.report.base import Fragment, Image, ReportContext, figure, heading, paragraph, table
from advharness.reporting.report.curves import MAX_PANELS, NO_DISTANCES, minimum_norm_distances
from advharness.reporting.report.figures import new_figure, to_png

#: At most this many rows per table (the rest are counted under it; LaTeX has the same rows).
MAX_ROWS = 60
#: Identity columns shown first, in this order, when present.
_LEAD = ("model", "framework", "attack", "norm", "eps")


def identity(frame: pd.DataFrame, metrics: Sequence[str], drop: Sequence[str] = ()) -> list[str]:
    """The columns that name a row: model, framework, attack, norm, eps (when present and
    not all missing), then every other column but ``metrics`` and ``drop`` that takes more
    than one value (settings, seed, threat model...)."""
    lead = [c for c in _LEAD if c in frame and c not in drop and frame[c].notna().any()]
    rest = [c for c in frame.columns if c not in (*_LEAD, *metrics, *drop, "data_sha256")]
    return lead + [c for c in rest if frame[c].map(lambda v: None if _missing(v) else str(v)).nunique() > 1]


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))


def capped_table(frame: pd.DataFrame, columns: list[str], header: list[str], latex: str) -> Fragment:
    """The first :data:`MAX_ROWS` rows of ``frame`` as a table (also LaTeX; floats rounded
    to 4 decimals), with a note when rows were left out."""
    rows = frame[columns].head(MAX_ROWS).round(4).values.tolist()
    out = table(header, rows, latex=latex)
    if len(frame) > MAX_ROWS:
        out.extend(paragraph(f"Only the first {MAX_ROWS} of {len(frame)} rows are shown.", css="legend"))
    return out


def interval(frame: pd.DataFrame, value: str, low: str = "ci_low", high: str = "ci_high") -> list[str]:
    """``0.42 [0.31, 0.55]`` per row."""
    return [
        "-" if _missing(v) else (f"{v:.3f}" + ("" if _missing(lo) else f" [{lo:.3f}, {hi:.3f}]"))
        for v, lo, hi in zip(frame[value], frame[low], frame[high], strict=True)
    ]


def build_optimality(ctx: ReportContext) -> Fragment:
    """Local optimality per minimum-norm cell and global optimality per attack
    implementation (AttackBench), best first."""
    distances = minimum_norm_distances(ctx)
    if distances.empty:
        return Fragment.unavailable(NO_DISTANCES)
    local = local_optimality(distances)
    if local.empty or local["local_optimality"].isna().all():
        return Fragment.unavailable(
            "every local optimality is undefined: on each model the empirical best curve is "
            "flat (nothing to compare)"
        )
    glob = global_optimality(local).sort_values("global_optimality", ascending=False, na_position="last")
    g_metrics = ("global_optimality", "min_local", "max_local", "n_models", "n_cells")
    g_ident = ["attack", "library", *[c for c in glob.columns if c not in ("attack", "library", *g_metrics)]]
    out = heading("Global optimality (mean over models)")
    out.extend(capped_table(glob, [*g_ident, *g_metrics], [*g_ident, *g_metrics], latex="global-optimality"))
    metrics = ("n", "local_optimality", "area", "best_area", "max_distance", "clean_accuracy", "cell_key")
    local = local.sort_values(["model", "local_optimality"], ascending=[True, False], na_position="last")
    ident = identity(local, metrics, drop=("eps", "library"))
    cols = [*ident, "library", "local_optimality", "area", "best_area", "max_distance", "clean_accuracy", "n"]
    out.extend(heading("Local optimality per cell"))
    out.extend(capped_table(local, cols, cols, latex="local-optimality"))
    out.extend(
        paragraph(
            "local_optimality: 1 - (A - A*) / (c R - A*), the share of the area between no attack "
            "and the empirical best (over every minimum-norm cell on the model) that the cell's "
            "robust-accuracy curve covers; 1 matches the best on every sample. global_optimality: "
            "its mean over models. Best first.",
            css="legend",
        )
    )
    return out


_AGREEMENT = (
    "library_a",
    "library_b",
    "cell_key_a",
    "cell_key_b",
    "n",
    "success_rate_a",
    "success_rate_b",
    "agreement",
    "only_a",
    "only_b",
    "mcnemar_p",
    "mcnemar_test",
    "n_both",
    "median_difference",
    "wilcoxon_p",
    "rank_biserial",
    "max_abs_x_adv_difference",
    "verdict",
    "stronger",
    "evidence",
)
#: Verdicts in table order: disagreements first.
_VERDICT_ORDER = {"differs": 0, "no samples": 1, "equivalent": 2, "identical": 3}


def build_agreement(ctx: ReportContext) -> Fragment:
    """Every pair of libraries that ran the same setting (``library_agreement``): agreement
    share, McNemar and Wilcoxon p-values, verdict and the stronger library; a heatmap of
    the mean agreement share per attack."""
    if ctx.records.empty:
        return Fragment.unavailable("no per-sample records")
    if len(ctx.libraries) < 2:
        return Fragment.unavailable("a single library: nothing to compare")
    try:
        pairs = library_agreement(ctx.records, ctx.summary)
    except ValueError as e:
        return Fragment.unavailable(f"the libraries' cells cannot be paired ({e})")
    if pairs.empty:
        return Fragment.unavailable("no setting was run by two or more libraries")
    pairs = pairs.assign(setting=[ctx.key_labels.get(str(k), str(k)) for k in pairs["cell_key_a"]])
    pairs = pairs.sort_values(
        ["verdict", "agreement"],
        key=lambda s: s.map(_VERDICT_ORDER) if s.name == "verdict" else s,
        kind="stable",
    )
    ident = [c for c in ("model", "framework") if c in pairs]
    cols = [
        *ident,
        "setting",
        "library_a",
        "library_b",
        "n",
        "agreement",
        "mcnemar_p",
        "wilcoxon_p",
        "verdict",
        "stronger",
        "evidence",
    ]
    out = _agreement_heatmap(pairs, ctx.libraries)
    out.extend(capped_table(pairs, cols, cols, latex="library-agreement"))
    out.extend(
        paragraph(
            "On the samples both libraries classified correctly: agreement = share where both "
            "succeed or both fail; McNemar's test on the paired successes; Wilcoxon signed-rank "
            "test on the distances of the commonly broken samples. identical: same successes and "
            "distances; equivalent: neither test significant at 0.01 and agreement >= 0.9; "
            "differs otherwise (stronger: the library with more successes or smaller distances). "
            "Disagreements first.",
            css="legend",
        )
    )
    return out


def _agreement_heatmap(pairs: pd.DataFrame, libraries: list[str]) -> Fragment:
    """One small library x library matrix per attack: the mean agreement share over its
    settings (one panel per attack, at most :data:`MAX_PANELS`)."""
    attacks = list(dict.fromkeys(pairs["attack"].astype(str)))
    shown = attacks[:MAX_PANELS]
    libs = [lib for lib in libraries if lib in set(pairs["library_a"]) | set(pairs["library_b"])]
    index = {lib: i for i, lib in enumerate(libs)}
    fig, axes = new_figure(len(shown), ncols=4, panel=(3.0, 2.8))
    image = None
    for ax, attack in zip(axes, shown, strict=True):
        mean = (
            pairs[pairs["attack"].astype(str) == attack]
            .groupby(["library_a", "library_b"])["agreement"]
            .mean()
        )
        m = np.full((len(libs), len(libs)), np.nan)
        for a, b, v in zip(mean.index.get_level_values(0), mean.index.get_level_values(1), mean, strict=True):
            m[index[str(a)], index[str(b)]] = m[index[str(b)], index[str(a)]] = v
        image = ax.imshow(m, vmin=0.0, vmax=1.0, cmap="viridis")
        for i in range(len(libs)):
            for j in range(len(libs)):
                if i != j and np.isfinite(m[i, j]):
                    ax.text(
                        j,
                        i,
                        f"{m[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="k" if m[i, j] > 0.6 else "w",
                    )
        ax.set_xticks(range(len(libs)), libs, fontsize=7)
        ax.set_yticks(range(len(libs)), libs, fontsize=7)
        ax.set_title(attack, fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8)
    note = (
        ""
        if len(attacks) <= MAX_PANELS
        else f" Only the first {MAX_PANELS} of {len(attacks)} attacks are shown."
    )
    caption = (
        "Mean agreement share (library_agreement's agreement) of each pair of libraries over an "
        "attack's settings; blank: the diagonal, or a pair that never ran the same setting." + note
    )
    return figure(Image("library-agreement", to_png(fig), "agreement share between libraries"), caption)


_WORST = (
    "n",
    "n_members",
    "members",
    "robust_accuracy",
    "ci_low",
    "ci_high",
    "best_member_robust_accuracy",
    "gain",
)


def build_worst_case(ctx: ReportContext) -> Fragment:
    """The worst case over libraries (``best_implementation``) and over attacks
    (``ensemble_robust_accuracy``) with their Wilson intervals, and the complementarity of
    each pair of libraries (``pairwise_complementarity``)."""
    if ctx.records.empty:
        return Fragment.unavailable("no per-sample records")
    try:
        best = best_implementation(ctx.records, ctx.summary)
        ens = ensemble_robust_accuracy(ctx.records, ctx.summary)
        comp = pairwise_complementarity(ctx.records, summary=ctx.summary)
    except ValueError as e:  # runs of one group disagree on the clean predictions
        return Fragment.unavailable(f"the runs cannot be pooled per sample ({e})")
    best = best[best["n_members"] >= 2] if len(best) else best
    ens = ens[ens["n_members"] >= 2] if len(ens) else ens
    if best.empty and ens.empty and comp.empty:
        return Fragment.unavailable("no setting, and no model, norm and eps, has two or more runs")
    out = heading("Over libraries (best implementation)")
    if best.empty:
        out.extend(Fragment.unavailable("no setting was run by two or more libraries"))
    else:
        out.extend(_worst_table(best, "worst-case-libraries"))
    out.extend(heading("Over attacks and libraries (ensemble)"))
    if ens.empty:
        out.extend(Fragment.unavailable("no model, norm and eps has two or more runs"))
    else:
        out.extend(_worst_table(ens, "worst-case-attacks"))
    out.extend(
        paragraph(
            "robust accuracy: share of the samples correct and broken by no member within the eps "
            "(the per-sample worst case), with its Wilson 95% interval; best single: the lowest "
            "robust accuracy of one member alone; gain: how much lower the worst case is.",
            css="legend",
        )
    )
    out.extend(heading("Complementarity of library pairs"))
    if comp.empty:
        out.extend(Fragment.unavailable("no setting was run by two or more libraries"))
    else:
        comp = comp.sort_values("complementarity", ascending=False, kind="stable")
        metrics = ("complementarity", "gain_of_a", "gain_of_b", "robust_accuracy_a", "robust_accuracy_b")
        metrics_all = (*metrics, "robust_accuracy_both", "n", "both", "only_a", "only_b", "neither")
        ident = identity(comp, (*metrics_all, "library_a", "library_b", "cell_key_a", "cell_key_b"))
        cols = [
            *ident,
            "library_a",
            "library_b",
            "n",
            "only_a",
            "only_b",
            "neither",
            *metrics,
            "robust_accuracy_both",
        ]
        out.extend(capped_table(comp, cols, cols, latex="complementarity"))
        out.extend(
            paragraph(
                "Among the correct samples: complementarity = (only_a + only_b) / (only_a + only_b "
                "+ neither); gain_of_b = only_b / n, the robust accuracy that adding library b to a "
                "removes. Most complementary first.",
                css="legend",
            )
        )
    return out


def _worst_table(frame: pd.DataFrame, latex: str) -> Fragment:
    frame = frame.sort_values("robust_accuracy", kind="stable")
    ident = identity(frame, _WORST)
    shown = frame.assign(worst=interval(frame, "robust_accuracy"))
    members = "members" if frame["n_members"].max() <= 4 else "n_members"
    cols = [*ident, members, "n", "worst", "best_member_robust_accuracy", "gain"]
    header = [*ident, members, "n", "robust accuracy [95% CI]", "best single", "gain"]
    return capped_table(shown, cols, header, latex=latex)
