"""The report's defenses section: each defended model's per-sample worst case over
non-adaptive, adaptive, black-box and transfer attacks
(:func:`~advharness.analytics.defense_worst_case`) and its detector's ROC curve
(:func:`~advharness.analytics.detector_roc`)."""

from __future__ import annotations

from advharness.analytics import defense_worst_case, detector_roc
from advharness.analytics.defenses import CATEGORIES
from advharness.reporting.report.base import Fragment, Image, ReportContext, figure, heading, paragraph
from advharness.reporting.report.comparisons import capped_table, interval
from advharness.reporting.report.figures import new_figure, style_axes, to_png


def build_defenses(ctx: ReportContext) -> Fragment:
    """The worst-case table of every defended model and the ROC of every detector."""
    s = ctx.summary
    if s.empty or "defense" not in s.columns or not (s["defense"].fillna("").astype(str) != "").any():
        return Fragment.unavailable("no defended model in this run (see docs/defenses.md)")
    if ctx.records.empty:
        return Fragment.unavailable("no per-sample records")
    worst = defense_worst_case(ctx.summary, ctx.records)
    out = heading("Worst case per defended model")
    if worst.empty:
        out.extend(Fragment.unavailable("no cell with an eps ran on a defended model"))
    else:
        worst = worst.assign(robust=interval(worst, "worst_case_robust_accuracy"))
        rates = [f"{c}_success_rate" for c in CATEGORIES]
        cols = ["defended_model", "norm", "eps", "n_correct", *rates, "worst_case_success_rate", "robust"]
        header = ["model", "norm", "eps", "correct", *CATEGORIES, "worst case", "robust accuracy [95%]"]
        out.extend(capped_table(worst, cols, header, "defense-worst-case"))
        out.extend(
            paragraph(
                "Success rates among the correctly classified samples, per category, each the per-sample "
                "worst case over its cells (attacks and libraries) within eps; worst case: over every "
                "category. A defense whose adaptive, black-box or transfer rate is far above its "
                "non-adaptive one is flagged defense_over_credited.",
                css="legend",
            )
        )
    curve, area = detector_roc(ctx.records)
    if area.empty:
        return out
    out.extend(heading("Detectors"))
    out.extend(
        capped_table(
            area,
            ["model", "auc", "n_clean", "n_adversarial"],
            ["model", "AUC", "clean", "adversarial"],
            "detector-auc",
        )
    )
    fig, axes = new_figure(1)
    ax = axes[0]
    for model, g in curve.groupby("model", sort=False):
        ax.plot(g["fpr"], g["tpr"], label=str(model))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    style_axes(
        ax, "detector ROC", "false-positive rate (clean inputs)", "detection rate (fooling inputs)", len(area)
    )
    caption = (
        "Negatives: each clean input once; positives: every cell's adversarial inputs that fool the "
        "classifier validly. The detector's threshold flags at most its fpr of clean calibration images."
    )
    out.extend(figure(Image("detector-roc", to_png(fig), "detector ROC curves"), caption))
    return out
