"""A defense's robustness as the per-sample worst case over how it was attacked.

Every cell judged on a defended model (its ``defended_model`` column: the model itself, or
the deployed defense of an adaptive surrogate) falls in one *category*:

* ``non-adaptive`` - white-box attacks on the defense as deployed (its own gradients);
* ``adaptive`` - white-box attacks through its BPDA / EOT surrogate;
* ``black-box`` - score- and decision-based attacks (and the noise baseline) on it;
* ``transfer`` - adversarials crafted on another model (its undefended one).

Per (defended model, norm, eps, targeting, seed) a sample is broken by a category when any of
its cells broke it within eps (``success_at_eps``), and by the defense's worst case when any
cell did. A sample counts as correct only if every cell saw it classified correctly (a
randomized defense's cells all judge on the same evaluations). Cells without an eps
(minimum-norm runs without a reporting radius) are left out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from advharness.analytics.frames import present
from advharness.analytics.intervals import wilson_interval

CATEGORIES = ("non-adaptive", "adaptive", "black-box", "transfer")
#: What identifies a worst-case group.
GROUP = ("defended_model", "norm", "eps", "targeted", "run_seed")


def category(row: pd.Series) -> str:
    """The category of one summary row (see the module docstring)."""
    threat = str(row.get("threat_model", "white-box"))
    if threat == "transfer":
        return "transfer"
    if threat != "white-box" or row.get("attack") == "noise":
        return "black-box"
    return "adaptive" if str(row.get("adaptive") or "") else "non-adaptive"


def defense_cells(summary: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame:
    """The records of every ``ok`` cell with an eps, with ``defended_model``, ``adaptive``
    and ``category`` from the summary (a run without defense columns: each model its own)."""
    if summary.empty or records.empty:
        return pd.DataFrame()
    s = summary[(summary["status"] == "ok") & summary["eps"].notna()].copy()
    if "defended_model" not in s.columns:
        s["defended_model"] = s["model"]
    s["defended_model"] = s["defended_model"].where(s["defended_model"].astype(str) != "", s["model"])
    if "adaptive" not in s.columns:
        s["adaptive"] = ""
    s["adaptive"] = s["adaptive"].fillna("")
    s["category"] = s.apply(category, axis=1) if len(s) else pd.Series(dtype=str)
    ours = ["defended_model", "adaptive", "category"]
    recs = records.drop(columns=[c for c in ours if c in records.columns])
    missing = [c for c in present(s, GROUP) if c not in recs.columns and c not in ours]
    return recs.merge(s[["cell", *ours, *missing]], on="cell", how="inner")


def defense_worst_case(
    summary: pd.DataFrame, records: pd.DataFrame, confidence: float = 0.95
) -> pd.DataFrame:
    """Per (defended model, norm, eps, targeted, seed): ``n``, ``n_correct``, for each
    category and for ``worst_case`` the success rate among correct samples
    (``<category>_success_rate``, NaN where no cell of it ran) and ``n_cells_<category>``,
    and the worst case's robust accuracy with a Wilson interval."""
    cells = defense_cells(summary, records)
    if cells.empty:
        return pd.DataFrame()
    keys = present(cells, GROUP)
    rows = []
    for ident, g in cells.groupby(keys, dropna=False, sort=False):
        vals = ident if isinstance(ident, tuple) else (ident,)
        per = g.assign(
            broken=g["success_at_eps"].astype(bool) & g["correct"].astype(bool),
            correct=g["correct"].astype(bool),
        )
        correct = per.groupby("sample")["correct"].all()
        n, n_correct = len(correct), int(correct.sum())
        row: dict[str, object] = dict(zip(keys, vals, strict=True))
        row.update(n=n, n_correct=n_correct)
        broken_any = pd.Series(False, index=correct.index)
        for cat in CATEGORIES:
            part = per[per["category"] == cat]
            row[f"n_cells_{cat}"] = int(part["cell"].nunique())
            if part.empty:
                row[f"{cat}_success_rate"] = float("nan")
                continue
            broken = part.groupby("sample")["broken"].any().reindex(correct.index, fill_value=False) & correct
            broken_any |= broken
            row[f"{cat}_success_rate"] = float(broken.sum() / n_correct) if n_correct else float("nan")
        row["worst_case_success_rate"] = float(broken_any.sum() / n_correct) if n_correct else float("nan")
        robust = int((correct & ~broken_any).sum())
        low, high = wilson_interval(robust, n, confidence)
        row.update(
            worst_case_robust_accuracy=robust / n if n else float("nan"),
            ci_low=float(low),
            ci_high=float(high),
            worst_category=_worst(row),
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _worst(row: dict[str, object]) -> str:
    """The category with the highest success rate (ties: the first in :data:`CATEGORIES`)."""
    rates = {c: row[f"{c}_success_rate"] for c in CATEGORIES}
    finite = {c: float(v) for c, v in rates.items() if isinstance(v, float) and np.isfinite(v)}
    return max(finite, key=lambda c: finite[c]) if finite else ""


def detector_roc(records: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ROC of each detected model's detector (records with ``detector_score``): negatives are
    the clean inputs (each sample once), positives the adversarial inputs that fool the
    classifier validly (every cell's). Returns the curve (``model``, ``fpr``, ``tpr``,
    ``threshold``) and per model ``auc``, ``n_clean``, ``n_adversarial`` (scikit-learn's
    ``roc_curve`` and ``auc``)."""
    from sklearn.metrics import auc, roc_curve

    if records.empty or "detector_score" not in records.columns:
        return pd.DataFrame(columns=["model", "fpr", "tpr", "threshold"]), pd.DataFrame()
    recs = records[records["detector_score"].notna()]
    curves, areas = [], []
    for model, g in recs.groupby("model", sort=False):
        clean = g.drop_duplicates("sample")["clean_detector_score"].to_numpy(np.float64)
        valid = ~(g["nonfinite"] | g["box_violation"] | g["eps_violation"] | g["degenerate"]).astype(bool)
        adv = g.loc[g["fooled"].astype(bool) & valid, "detector_score"].to_numpy(np.float64)
        if not len(clean) or not len(adv):
            continue
        labels = np.r_[np.zeros(len(clean)), np.ones(len(adv))]
        fpr, tpr, thresholds = roc_curve(labels, np.r_[clean, adv])
        curves.append(pd.DataFrame({"model": model, "fpr": fpr, "tpr": tpr, "threshold": thresholds}))
        areas.append(
            {"model": model, "auc": float(auc(fpr, tpr)), "n_clean": len(clean), "n_adversarial": len(adv)}
        )
    curve = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    return curve, pd.DataFrame(areas)
