"""Do two libraries' implementations of one attack agree?

Pairs are matched on the same model (hence framework), attack, norm, eps, targeting,
threat model, seed and sample index (with ``summary``, also the settings: ``steps``,
``param_<name>``...). On the initially correct samples of each pair:

* success agreement: the share of samples both break or both leave;
* McNemar's test on the paired successes (McNemar 1947): with ``b`` samples broken by A
  only and ``c`` by B only, the exact two-sided binomial test of ``b`` out of ``b + c`` at
  1/2 when ``b + c < 25``, else ``χ² = (|b - c| - 1)² / (b + c)`` with 1 degree of freedom
  (continuity-corrected);
* distances on the commonly broken samples: the median of ``d_A - d_B``, the Wilcoxon
  signed-rank test (two-sided, zero differences dropped), and the matched-pairs
  rank-biserial correlation ``r = (W+ - W-) / (W+ + W-)`` (Kerby 2014), from -1 (A's
  distances always the smaller) to 1 (always the larger);
* with the adversarial examples: the largest absolute difference of ``x_adv``.

The verdict per pair: ``identical`` (the same success on every sample, distances equal
within ``rtol``/``atol``, and, when the arrays are given, ``x_adv`` within ``x_atol``);
``equivalent`` (neither test significant at ``alpha`` and success agreement at least
``min_agreement``); ``differs`` otherwise, with ``stronger`` (the library with more
successes when McNemar is significant, else the one with smaller distances when Wilcoxon
is, else ``neither``) and ``evidence`` (the test and its p-value);
``no samples`` when no sample was initially correct in both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from advharness.analytics.frames import group_columns, groups, one_per_sample, scales, with_settings

#: Below this many discordant pairs McNemar's test is exact (binomial).
MCNEMAR_EXACT_BELOW = 25


def mcnemar(success_a: Any, success_b: Any, exact_below: int = MCNEMAR_EXACT_BELOW) -> dict[str, Any]:
    """McNemar's test of paired successes: ``only_a`` (``b``), ``only_b`` (``c``),
    ``statistic`` (χ², NaN when exact), ``p_value`` (two-sided; 1 when ``b + c = 0``) and
    ``test`` (``exact`` or ``chi2``)."""
    from scipy.stats import binomtest, chi2

    a = np.asarray(success_a, bool)
    b_ = np.asarray(success_b, bool)
    b, c = int((a & ~b_).sum()), int((b_ & ~a).sum())
    if b + c == 0:
        return {"only_a": b, "only_b": c, "statistic": float("nan"), "p_value": 1.0, "test": "exact"}
    if b + c < exact_below:
        p = float(binomtest(b, b + c, 0.5).pvalue)
        return {"only_a": b, "only_b": c, "statistic": float("nan"), "p_value": min(p, 1.0), "test": "exact"}
    stat = (abs(b - c) - 1) ** 2 / (b + c)
    return {"only_a": b, "only_b": c, "statistic": stat, "p_value": float(chi2.sf(stat, 1)), "test": "chi2"}


def rank_biserial(differences: Any) -> float:
    """Matched-pairs rank-biserial correlation of paired differences: ``(W+ - W-) / (W+ +
    W-)`` over the nonzero differences ranked by size (ties get their mean rank); NaN when
    every difference is 0."""
    from scipy.stats import rankdata

    d = np.asarray(differences, dtype=np.float64)
    d = d[d != 0]
    if not len(d):
        return float("nan")
    ranks = rankdata(np.abs(d))
    plus, minus = float(ranks[d > 0].sum()), float(ranks[d < 0].sum())
    return (plus - minus) / (plus + minus)


def paired_distance_test(distances_a: Any, distances_b: Any) -> dict[str, Any]:
    """Paired comparison of two runs' distances on the same samples: ``n``,
    ``median_difference`` (median of ``a - b``), the Wilcoxon signed-rank ``statistic`` and
    two-sided ``p_value`` (scipy's defaults: exact for small samples without ties; 1 when
    every difference is 0, NaN for no pairs) and ``rank_biserial``."""
    from scipy.stats import wilcoxon

    a = np.asarray(distances_a, dtype=np.float64)
    b = np.asarray(distances_b, dtype=np.float64)
    diff = a - b
    out: dict[str, Any] = {
        "n": len(diff),
        "median_difference": float(np.median(diff)) if len(diff) else float("nan"),
        "statistic": float("nan"),
        "p_value": float("nan"),
        "rank_biserial": rank_biserial(diff),
    }
    if not len(diff):
        return out
    if not np.any(diff != 0):
        return {**out, "p_value": 1.0}
    res = wilcoxon(a, b)
    return {**out, "statistic": float(res.statistic), "p_value": float(res.pvalue)}


def max_abs_difference(x_a: Any, x_b: Any) -> float:
    """The largest absolute element-wise difference of two arrays of the same shape (NaN
    when the shapes differ; non-finite elements are ignored)."""
    a = np.asarray(x_a, dtype=np.float64)
    b = np.asarray(x_b, dtype=np.float64)
    if a.shape != b.shape:
        return float("nan")
    diff = np.abs(a - b)
    diff = diff[np.isfinite(diff)]
    return float(diff.max()) if diff.size else 0.0


def verdict(
    agreement: float,
    mcnemar_p: float,
    wilcoxon_p: float,
    identical: bool,
    alpha: float = 0.01,
    min_agreement: float = 0.9,
) -> str:
    """``identical``, ``equivalent`` or ``differs`` (see the module docstring)."""
    if identical:
        return "identical"
    significant = mcnemar_p < alpha or (not math.isnan(wilcoxon_p) and wilcoxon_p < alpha)
    return "equivalent" if not significant and agreement >= min_agreement else "differs"


def compare_runs(
    a: pd.DataFrame,
    b: pd.DataFrame,
    norm: str,
    alpha: float = 0.01,
    min_agreement: float = 0.9,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    x_adv: tuple[Any, Any] | None = None,
    x_atol: float = 1e-5,
) -> dict[str, Any]:
    """Compare two runs' records (one cell each; matched on ``sample``): success rates,
    ``agreement``, McNemar, the paired distance test on commonly broken samples,
    ``max_abs_x_adv_difference`` (with ``x_adv = (x_a, x_b)``), ``verdict``, ``stronger``
    (``a``, ``b``, ``neither`` or empty) and ``evidence``."""
    pair = a[["sample", "correct", "success", norm]].merge(
        b[["sample", "correct", "success", norm]], on="sample", suffixes=("_a", "_b")
    )
    correct = pair["correct_a"].to_numpy(bool) & pair["correct_b"].to_numpy(bool)
    sa = pair["success_a"].to_numpy(bool)[correct]
    sb = pair["success_b"].to_numpy(bool)[correct]
    both = sa & sb
    da = pair[f"{norm}_a"].to_numpy(dtype=np.float64)[correct][both]
    db = pair[f"{norm}_b"].to_numpy(dtype=np.float64)[correct][both]
    test = mcnemar(sa, sb)
    dist = paired_distance_test(da, db)
    max_x = max_abs_difference(*x_adv) if x_adv is not None else float("nan")
    n = int(correct.sum())
    agreement = float((sa == sb).mean()) if n else float("nan")
    same = n > 0 and bool((sa == sb).all()) and bool(np.allclose(da, db, rtol=rtol, atol=atol))
    same = same and (x_adv is None or max_x <= x_atol)
    out: dict[str, Any] = {
        "n": n,
        "success_rate_a": float(sa.mean()) if n else float("nan"),
        "success_rate_b": float(sb.mean()) if n else float("nan"),
        "agreement": agreement,
        "only_a": test["only_a"],
        "only_b": test["only_b"],
        "mcnemar_p": test["p_value"],
        "mcnemar_test": test["test"],
        "n_both": int(both.sum()),
        "median_difference": dist["median_difference"],
        "wilcoxon_p": dist["p_value"],
        "rank_biserial": dist["rank_biserial"],
        "max_abs_x_adv_difference": max_x,
    }
    if not n:
        return {**out, "verdict": "no samples", "stronger": "", "evidence": ""}
    v = verdict(agreement, test["p_value"], dist["p_value"], same, alpha, min_agreement)
    stronger, evidence = "", ""
    if v == "differs":
        if test["p_value"] < alpha:
            stronger = "a" if test["only_a"] > test["only_b"] else "b"
            evidence = f"mcnemar p={test['p_value']:.2g}"
        elif not math.isnan(dist["p_value"]) and dist["p_value"] < alpha:
            stronger = "a" if dist["median_difference"] < 0 else "b"
            evidence = f"wilcoxon p={dist['p_value']:.2g}"
        else:
            stronger = "neither"
            evidence = f"agreement {agreement:.2f} < {min_agreement:g}"
    return {**out, "verdict": v, "stronger": stronger, "evidence": evidence}


def library_agreement(
    records: pd.DataFrame,
    summary: pd.DataFrame | None = None,
    adversarials: Mapping[str, Any] | None = None,
    alpha: float = 0.01,
    min_agreement: float = 0.9,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    x_atol: float = 1e-5,
) -> pd.DataFrame:
    """Every pair of libraries that ran the same attack setting (see the module docstring),
    one row each: the setting, ``library_a``, ``library_b``, ``cell_key_a``, ``cell_key_b``
    and the columns of :func:`compare_runs` (``stronger`` names the library). The
    tolerances ``atol`` and ``x_atol`` grow with the inputs' magnitude as the referee's do.
    ``adversarials``: ``x_adv`` arrays by ``cell_key`` (see
    :func:`advharness.reporting.results.read_adversarials_by_key`). Raises ``ValueError``
    when one library has several cells of one setting (pass ``summary`` so their settings
    tell them apart)."""
    recs = one_per_sample(with_settings(records, summary))
    keys = group_columns(recs, exclude=("library",))
    rows = []
    for ident, grp in groups(recs, keys):
        per_lib = grp.groupby("library", sort=False)["cell_key"].unique()
        multi = {str(lib): list(k) for lib, k in per_lib.items() if len(k) > 1}
        if multi:
            raise ValueError(
                f"several cells of one setting for one library ({multi}): pass summary= so "
                "that their settings (steps, params...) tell them apart"
            )
        cells = {str(lib): grp[grp["library"] == lib] for lib in per_lib.index}
        for lib_a, lib_b in combinations(cells, 2):
            key_a, key_b = str(cells[lib_a]["cell_key"].iloc[0]), str(cells[lib_b]["cell_key"].iloc[0])
            arrays = None
            if adversarials is not None and key_a in adversarials and key_b in adversarials:
                arrays = (adversarials[key_a], adversarials[key_b])
            scale = float(scales(cells[lib_a].iloc[:1])[0])
            res = compare_runs(
                cells[lib_a],
                cells[lib_b],
                str(ident.get("norm", grp["norm"].iloc[0])),
                alpha,
                min_agreement,
                rtol,
                atol * scale,
                arrays,
                x_atol * scale,
            )
            res["stronger"] = {"a": lib_a, "b": lib_b}.get(res["stronger"], res["stronger"])
            rows.append(
                {
                    **ident,
                    "library_a": lib_a,
                    "library_b": lib_b,
                    "cell_key_a": key_a,
                    "cell_key_b": key_b,
                    **res,
                }
            )
    return pd.DataFrame(rows)
