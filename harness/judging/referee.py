"""The referee: judges what a library returned, identically for every library.

Nothing a library says about success is used. Predictions come from the harness's own
forward pass; norms, eps-ball and box checks are computed here on the returned arrays.

A sample counts as a *success* only if the model got it right originally, the adversarial
input is finite, not degenerate, inside the box and (for fixed-budget attacks, or when an
``eps`` is given) inside the eps-ball, and the model's prediction meets the goal (differs
from the label, or equals the target when targeted). Samples that fool the model but break
a constraint are counted as ``fooled`` and flagged, never as successes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from advharness.config.catalogue import CLEAN_ACCURACY_FLOOR

#: Relative and absolute float tolerance for eps-ball checks (float32 rounding, e.g.
#: Foolbox reports L-inf 0.10000000149 for eps 0.1).
EPS_RTOL = 1e-5
EPS_ATOL = 1e-6
#: Tolerance for box (bounds) checks and for counting a coordinate as changed (L0).
BOX_ATOL = 1e-6
L0_ATOL = 1e-6
#: The random-noise baseline's attack name: never a white-box attack, whatever its threat
#: model says (Carlini et al. 2019: noise must succeed less often than white-box attacks).
NOISE_ATTACK = "noise"


@dataclass(frozen=True)
class Verdict:
    """Per-sample judgement (arrays of length N) for one attack cell."""

    records: pd.DataFrame


_NORM_FUNCS: dict[str, Any] = {
    "l0": lambda d: (np.abs(d) > L0_ATOL).sum(axis=1).astype(np.float64),
    "l1": lambda d: np.abs(d).sum(axis=1),
    "l2": lambda d: np.sqrt((d * d).sum(axis=1)),
    "linf": lambda d: np.abs(d).max(axis=1) if d.shape[1] else np.zeros(len(d)),
}


def norm_of(delta: np.ndarray, norm: str) -> np.ndarray:
    """Per-sample ``norm`` (l0, l1, l2 or linf) of ``delta`` (N, ...), in float64."""
    return np.asarray(_NORM_FUNCS[norm](np.asarray(delta.reshape(len(delta), -1), np.float64)))


def perturbation_norms(delta: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample L0, L1, L2 and L-inf norms of ``delta`` (N, ...), in float64."""
    d = delta.reshape(len(delta), -1).astype(np.float64)
    return {k: np.asarray(f(d)) for k, f in _NORM_FUNCS.items()}


def input_scale(bounds: tuple[float, float]) -> float:
    """The magnitude of a model's inputs, ``max(1, |low|, |high|)``: the absolute tolerances
    (:data:`EPS_ATOL`, :data:`BOX_ATOL`) grow with it, since float32 rounding of an input
    near 255 is ~8e-6, not ~3e-8 as near 1."""
    return max(1.0, abs(float(bounds[0])), abs(float(bounds[1])))


def within_eps(norm_values: np.ndarray, eps: float, scale: float = 1.0) -> np.ndarray:
    """Norms inside the eps-ball, up to float32 rounding of inputs of magnitude ``scale``."""
    return norm_values <= eps * (1.0 + EPS_RTOL) + EPS_ATOL * scale


def judge(
    *,
    x: np.ndarray,
    y: np.ndarray,
    x_adv: np.ndarray,
    clean_pred: np.ndarray,
    adv_pred: np.ndarray,
    bounds: tuple[float, float],
    norm: str,
    eps: float | None,
    enforce_eps: bool,
    targets: np.ndarray | None = None,
    detected: np.ndarray | None = None,
    evaluations: int = 1,
) -> Verdict:
    """Judge one batch. ``adv_pred`` must be the harness's prediction on ``x_adv``.

    ``detected``: a detected model's flags on ``x_adv``; a flagged input is no success
    (``fooled`` is still the classifier's verdict). ``evaluations``: how many evaluations of
    a randomized model ``clean_pred`` and ``adv_pred`` sum up (each the first evaluation
    that errs, see :func:`worst_of_evaluations`), recorded per sample.

    ``enforce_eps``: a fixed-budget attack must stay in the eps-ball (violations are not
    successes). For minimum-norm attacks pass ``enforce_eps=False``: ``success`` is then any
    valid misclassification and ``success_at_eps`` adds the eps condition when eps is given.
    """
    n = len(x)
    x = x.astype(np.float32, copy=False)
    finite = np.isfinite(x_adv.reshape(n, -1)).all(axis=1)
    safe_adv = np.where(np.isfinite(x_adv), x_adv, x)  # norms of non-finite rows are NaN below
    norms = perturbation_norms(safe_adv - x)
    for v in norms.values():
        v[~finite] = np.nan
    lo, hi = bounds
    scale = input_scale(bounds)
    flat = safe_adv.reshape(n, -1)
    box_violation = finite & ((flat < lo - BOX_ATOL * scale) | (flat > hi + BOX_ATOL * scale)).any(axis=1)
    # Degenerate: a constant image (e.g. Foolbox's all-zero fallback) from a non-constant input.
    xf = x.reshape(n, -1)
    degenerate = finite & (np.ptp(flat, axis=1) == 0) & (np.ptp(xf, axis=1) > 0)
    correct = clean_pred == y
    goal = adv_pred == targets if targets is not None else adv_pred != y
    fooled = correct & goal & finite
    in_ball = within_eps(norms[norm], eps, scale) if eps is not None else np.ones(n, bool)
    eps_violation = finite & ~in_ball if (eps is not None and enforce_eps) else np.zeros(n, bool)
    valid = finite & ~box_violation & ~degenerate & ~eps_violation
    flagged = np.zeros(n, bool) if detected is None else np.asarray(detected, bool)
    success = fooled & valid & ~flagged
    success_at_eps = success & in_ball
    records = pd.DataFrame(
        {
            "sample": np.arange(n),
            "label": y.astype(np.int64),
            "target": targets.astype(np.int64) if targets is not None else np.full(n, -1),
            "clean_pred": clean_pred.astype(np.int64),
            "adv_pred": adv_pred.astype(np.int64),
            "correct": correct,
            "fooled": fooled,
            "success": success,
            "success_at_eps": success_at_eps,
            "nonfinite": ~finite,
            "box_violation": box_violation,
            "eps_violation": eps_violation,
            "degenerate": degenerate,
            **{k: v for k, v in norms.items()},
        }
    )
    if detected is not None:
        records["detected"] = flagged
    if evaluations > 1:
        records["evaluations"] = evaluations
    return Verdict(records)


def worst_of_evaluations(preds: np.ndarray, y: np.ndarray, targets: np.ndarray | None = None) -> np.ndarray:
    """One prediction per sample from ``preds`` (k evaluations x N) of a randomized model,
    against the defense: the first evaluation that meets the attack's goal (differs from
    ``y``; equals the target when ``targets`` are given), else the first evaluation. A sample
    is robust only if it survives every evaluation."""
    preds = np.asarray(preds)
    goal = preds == targets[None, :] if targets is not None else preds != y[None, :]
    first = np.argmax(goal, axis=0)  # 0 where no evaluation meets the goal
    return np.asarray(preds[first, np.arange(preds.shape[1])])


def summarize(records: pd.DataFrame, norm: str) -> dict[str, float | int]:
    """Per-cell summary of per-sample records (one row of the summary table)."""
    n = len(records)
    correct = records["correct"].to_numpy()
    success = records["success"].to_numpy()
    n_correct = int(correct.sum())
    dist = records.loc[success, norm].to_numpy()
    return {
        "n": n,
        "n_correct": n_correct,
        "n_misclassified_clean": n - n_correct,
        "clean_accuracy": n_correct / n if n else float("nan"),
        "success_rate": float(success.sum() / n_correct) if n_correct else float("nan"),
        "success_rate_at_eps": (
            float(records["success_at_eps"].sum() / n_correct) if n_correct else float("nan")
        ),
        "robust_accuracy": float((correct & ~success).sum() / n) if n else float("nan"),
        "median_norm": float(np.median(dist)) if len(dist) else float("nan"),
        "mean_norm": float(np.mean(dist)) if len(dist) else float("nan"),
        **{f"median_{k}": _median(records.loc[success, k]) for k in ("l0", "l1", "l2", "linf")},
        **{f"mean_{k}": _mean(records.loc[success, k]) for k in ("l0", "l1", "l2", "linf")},
        "n_fooled_invalid": int((records["fooled"] & ~records["success"]).sum()),
        "n_eps_violations": int(records["eps_violation"].sum()),
        "n_box_violations": int(records["box_violation"].sum()),
        "n_degenerate": int(records["degenerate"].sum()),
        "n_nonfinite": int(records["nonfinite"].sum()),
        **detection_summary(records),
    }


def detection_summary(records: pd.DataFrame) -> dict[str, float | int]:
    """A detected model's cell: ``n_detected`` (adversarials flagged) and
    ``detection_rate`` (flagged among the inputs that fool the classifier validly); nothing
    for an undetected model."""
    if "detected" not in records:
        return {}
    detected = records["detected"].to_numpy()
    fooling = (
        records["fooled"].to_numpy()
        & ~(
            records["nonfinite"] | records["box_violation"] | records["eps_violation"] | records["degenerate"]
        ).to_numpy()
    )
    n_fooling = int(fooling.sum())
    out: dict[str, float | int] = {
        "n_detected": int((detected & fooling).sum()),
        "detection_rate": float((detected & fooling).sum() / n_fooling) if n_fooling else float("nan"),
    }
    if "clean_detected" in records:  # the detector's false positives on the clean inputs
        out["false_positive_rate"] = float(records["clean_detected"].mean()) if len(records) else float("nan")
    return out


def _median(s: pd.Series) -> float:
    return float(np.median(s.to_numpy())) if len(s) else float("nan")


def _mean(s: pd.Series) -> float:
    return float(np.mean(s.to_numpy())) if len(s) else float("nan")


def flag_gradient_masking(summary: pd.DataFrame, tol: float = 1e-9) -> pd.Series:
    """True for a black-box, transfer or random-noise cell (attack :data:`NOISE_ATTACK`)
    that beats every white-box cell on the same model, norm, eps and targeting (success at
    eps), a classic sign of gradient masking.

    Cells without an eps, without a white-box reference, or not ``ok`` are never flagged.
    """
    flags = pd.Series(False, index=summary.index)
    if summary.empty or not {"threat_model", "success_rate_at_eps"} <= set(summary.columns):
        return flags  # e.g. every cell failed: nothing to compare
    ok = summary[(summary["status"] == "ok") & summary["eps"].notna()]
    keys = ["model", "norm", "eps", "targeted"]
    attack = ok["attack"] if "attack" in ok.columns else pd.Series("", index=ok.index)
    noise = attack == NOISE_ATTACK
    white_box = (ok["threat_model"] == "white-box") & ~noise
    white = ok[white_box].groupby(keys)["success_rate_at_eps"].max()
    for i, row in ok[~white_box].iterrows():
        best = white.get(tuple(row[k] for k in keys))
        if best is not None and row["success_rate_at_eps"] > best + tol:
            flags.at[i] = True
    return flags


def report_at_eps(
    summary: dict[str, Any], records: pd.DataFrame | None, eps: float | None, norm: str, minimal: bool
) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """A cell's row (and records) reported at radius ``eps``.

    A minimum-norm cell runs and is stored without an eps (its result does not depend on
    one); a radius only changes what is reported, recomputed here from the stored per-sample
    norms: ``success_at_eps``, ``success_rate_at_eps``, ``robust_accuracy_at_eps`` and, for
    black-box cells, ``success_at_q<L>`` (the best norm reached within L queries is within
    eps). A fixed-budget cell already ran at its eps: only ``robust_accuracy_at_eps`` is
    added. Rows without records (errors, unsupported) get the eps and nothing else.
    """
    out = {**summary, "eps": float("nan") if eps is None else float(eps)}
    if records is None or not len(records):
        return out, records
    if not minimal:
        out["robust_accuracy_at_eps"] = out.get("robust_accuracy", float("nan"))
        return out, records
    recs = records.copy()
    success = recs["success"].to_numpy()
    scale = input_scale((summary.get("bounds_low", 0.0), summary.get("bounds_high", 1.0)))
    in_ball = within_eps(recs[norm].to_numpy(), eps, scale) if eps is not None else np.ones(len(recs), bool)
    recs["success_at_eps"] = success & in_ball
    correct = recs["correct"].to_numpy()
    n, n_correct = len(recs), int(correct.sum())
    if eps is None:
        out["robust_accuracy_at_eps"] = float("nan")
    else:
        out["robust_accuracy_at_eps"] = float((correct & ~recs["success_at_eps"]).sum() / n)
    out["success_rate_at_eps"] = (
        float(recs["success_at_eps"].sum() / n_correct) if n_correct else float("nan")
    )
    levels = [c.removeprefix("norm_at_q") for c in recs.columns if c.startswith("norm_at_q")]
    attacked = recs[correct]
    for level in levels:
        if eps is None or not len(attacked):
            continue
        hit = within_eps(attacked[f"norm_at_q{level}"].to_numpy(), eps, scale)
        out[f"success_at_q{level}"] = float(hit.mean())
    return out, recs


def robust_accuracy_at(
    records: pd.DataFrame, norm: str, radii: Any, bounds: tuple[float, float] = (0.0, 1.0)
) -> pd.Series:
    """Robust accuracy of one cell's records at each radius in ``radii`` (a security
    curve from the stored per-sample norms; meaningful for minimum-norm cells)."""
    correct = records["correct"].to_numpy()
    success = records["success"].to_numpy()
    dist = records[norm].to_numpy()
    n = max(len(records), 1)
    scale = input_scale(bounds)
    return pd.Series(
        [float((correct & ~(success & within_eps(dist, float(r), scale))).sum() / n) for r in radii],
        index=list(radii),
        name="robust_accuracy",
    )


def flag_low_clean_accuracy(
    summary: pd.DataFrame, floor: float | pd.Series = CLEAN_ACCURACY_FLOOR
) -> pd.Series:
    """True for a cell whose model classifies less than ``floor`` of the clean inputs
    correctly: its success rate is over a few samples and its robust accuracy is near 0
    whatever the attack did (wrong data scale, layout or weights?). Cells without a clean
    accuracy (not run) are never flagged."""
    if "clean_accuracy" not in summary:
        return pd.Series(False, index=summary.index)
    acc = pd.to_numeric(summary["clean_accuracy"], errors="coerce")
    return (acc < floor).fillna(False).astype(bool)
