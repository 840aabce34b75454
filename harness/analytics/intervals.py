"""Uncertainty: confidence intervals of rates, spread over seeds, and whether two rates
can be told apart.

* Wilson score interval (Wilson 1927; Brown, Cai & DasGupta 2001 recommend it over the
  normal approximation for small n and rates near 0 or 1): for ``k`` successes in ``n``
  trials, ``p = k/n`` and ``z`` the normal quantile,
  ``(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)``.
* Bootstrap over samples: the percentile interval of the mean of per-sample values
  resampled with replacement (``scipy.stats.bootstrap``).
* Independent rates: a two-sided two-proportion z-test (pooled variance), or Fisher's exact
  test when an expected count is below 5. Paired rates (the same samples) belong to
  McNemar's test (:func:`advharness.analytics.agreement.mcnemar`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from advharness.analytics.frames import CELL_COLUMNS, group_columns, groups, present

#: The summary's rates that get an interval: (rate, its denominator column).
SUMMARY_RATES = (
    ("success_rate", "n_correct"),
    ("success_rate_at_eps", "n_correct"),
    ("robust_accuracy", "n"),
    ("robust_accuracy_at_eps", "n"),
)


def wilson_interval(
    successes: ArrayLike, n: ArrayLike, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """The Wilson score interval ``(low, high)`` of ``successes`` out of ``n`` (element-wise;
    NaN where ``n`` is 0 or missing)."""
    k = np.asarray(successes, dtype=np.float64)
    m = np.asarray(n, dtype=np.float64)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        valid = m > 0
        safe = np.where(valid, m, 1.0)
        p = k / safe
        denom = 1 + z * z / safe
        center = (p + z * z / (2 * safe)) / denom
        half = z * np.sqrt(np.clip(p * (1 - p), 0, None) / safe + z * z / (4 * safe * safe)) / denom
        # exactly 0 (1) when no (every) trial succeeded, as the formula gives without rounding
        low = np.where(valid, np.where(k <= 0, 0.0, np.clip(center - half, 0.0, 1.0)), np.nan)
        high = np.where(valid, np.where(k >= m, 1.0, np.clip(center + half, 0.0, 1.0)), np.nan)
    return low, high


def bootstrap_interval(
    values: ArrayLike, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (per-sample numbers, e.g.
    0/1 outcomes), resampling samples with replacement; NaN for no values, ``(v, v)`` when
    every value is ``v``."""
    from scipy.stats import bootstrap

    v = np.asarray(values, dtype=np.float64)
    if not len(v):
        return float("nan"), float("nan")
    if np.all(v == v[0]):
        return float(v[0]), float(v[0])
    res = bootstrap(
        (v,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def summary_intervals(summary: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """``summary`` with a Wilson interval for each rate of :data:`SUMMARY_RATES` it has:
    ``<rate>_ci_low`` and ``<rate>_ci_high`` (success rates over ``n_correct``, robust
    accuracies over ``n``; NaN where the rate is)."""
    out = summary.copy()
    for rate, denom in SUMMARY_RATES:
        if rate not in out.columns or denom not in out.columns:
            continue
        r = pd.to_numeric(out[rate], errors="coerce").to_numpy(dtype=np.float64)
        m = pd.to_numeric(out[denom], errors="coerce").to_numpy(dtype=np.float64)
        low, high = wilson_interval(np.round(r * m), m, confidence)
        out[f"{rate}_ci_low"] = np.where(np.isnan(r), np.nan, low)
        out[f"{rate}_ci_high"] = np.where(np.isnan(r), np.nan, high)
    return out


def rate_intervals(
    records: pd.DataFrame,
    method: str = "wilson",
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per summary row (``cell``) of ``records``: ``n``, ``n_correct``, ``n_success``,
    ``success_rate`` (successes within the row's eps, over the initially correct samples)
    and ``robust_accuracy`` (correct and not broken within eps, over all samples), each with
    ``_ci_low``/``_ci_high`` by ``method`` ``"wilson"`` or ``"bootstrap"`` (over samples)."""
    if method not in ("wilson", "bootstrap"):
        raise ValueError(f"method must be 'wilson' or 'bootstrap', not {method!r}")
    ident = present(records, ["cell", "cell_key", *CELL_COLUMNS, "eps"])
    rows = []
    for key, recs in groups(records, present(records, ["cell"])):
        first = recs.iloc[0]
        correct = recs["correct"].to_numpy(bool)
        hit = recs["success_at_eps"].to_numpy(bool) & correct
        robust = correct & ~hit
        row: dict[str, Any] = {**{c: first[c] for c in ident}, **key}
        row.update(n=len(recs), n_correct=int(correct.sum()), n_success=int(hit.sum()))
        for name, values, denom in (
            ("success_rate", hit[correct], int(correct.sum())),
            ("robust_accuracy", robust, len(recs)),
        ):
            row[name] = float(values.mean()) if denom else float("nan")
            if method == "wilson":
                low, high = wilson_interval(values.sum(), denom, confidence)
                lo, hi = float(low), float(high)
            else:
                lo, hi = bootstrap_interval(values, confidence, n_resamples, seed)
            row[f"{name}_ci_low"], row[f"{name}_ci_high"] = lo, hi
        rows.append(row)
    return pd.DataFrame(rows)


def seed_spread(
    summary: pd.DataFrame,
    metrics: Sequence[str] = ("success_rate", "robust_accuracy", "median_norm"),
) -> pd.DataFrame:
    """Mean and sample sd (``ddof=1``; NaN for one seed) of ``metrics`` over the experiment
    seeds (``run_seed``) of each setting (the ``ok`` rows; the setting is every identifying
    column but the seed): ``<metric>_mean``, ``<metric>_sd``, ``n_seeds``."""
    ok = summary[summary["status"] == "ok"] if "status" in summary.columns else summary
    keys = group_columns(ok, exclude=("run_seed",))
    rows = []
    for key, cells in groups(ok, keys):
        row: dict[str, Any] = {**key, "n_seeds": len(cells)}
        for m in present(cells, metrics):
            v = pd.to_numeric(cells[m], errors="coerce").dropna().to_numpy(dtype=np.float64)
            row[f"{m}_mean"] = float(v.mean()) if len(v) else float("nan")
            row[f"{m}_sd"] = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def two_proportion_test(k_a: int, n_a: int, k_b: int, n_b: int) -> tuple[float, str]:
    """Two-sided p-value that ``k_a/n_a`` and ``k_b/n_b`` (independent samples) have the
    same rate, and the test used: ``"fisher"`` (exact) when an expected count of the 2x2
    table is below 5, else ``"z"`` (pooled two-proportion z-test)."""
    from scipy.stats import fisher_exact

    if min(n_a, n_b) <= 0:
        return float("nan"), ""
    pooled = (k_a + k_b) / (n_a + n_b)
    expected = [n * q for n in (n_a, n_b) for q in (pooled, 1 - pooled)]
    if min(expected) < 5:
        table = [[k_a, n_a - k_a], [k_b, n_b - k_b]]
        return float(fisher_exact(table).pvalue), "fisher"
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    z = (k_a / n_a - k_b / n_b) / se
    return float(math.erfc(abs(z) / math.sqrt(2))), "z"


def compare_rates(
    k_a: int, n_a: int, k_b: int, n_b: int, alpha: float = 0.05, confidence: float = 0.95
) -> dict[str, Any]:
    """Are ``k_a/n_a`` and ``k_b/n_b`` (independent samples) distinguishable?

    Returns the rates, their Wilson intervals (``ci_a``, ``ci_b``), ``intervals_overlap``,
    the :func:`two_proportion_test` ``p_value`` and ``test``, and ``distinguishable``
    (``p_value < alpha``). Overlapping 95 % intervals do not prove equality (two rates can
    differ at 5 % with overlapping intervals): the test decides.
    """
    lo_a, hi_a = (float(v) for v in wilson_interval(k_a, n_a, confidence))
    lo_b, hi_b = (float(v) for v in wilson_interval(k_b, n_b, confidence))
    p, test = two_proportion_test(k_a, n_a, k_b, n_b)
    return {
        "rate_a": k_a / n_a if n_a else float("nan"),
        "rate_b": k_b / n_b if n_b else float("nan"),
        "ci_a": (lo_a, hi_a),
        "ci_b": (lo_b, hi_b),
        "intervals_overlap": bool(lo_a <= hi_b and lo_b <= hi_a),
        "p_value": p,
        "test": test,
        "distinguishable": bool(p < alpha),
    }
