"""Worst case over runs, per sample, and what one run adds to another.

* Per-sample worst case (Carlini et al. 2019, §4.2: report "the per-example worst case over
  attacks", the mean over x of the min over attacks; AutoAttack's robust accuracy is this
  over its four attacks): a sample is broken when any member run broke it within the
  setting's eps (``success_at_eps``). Over libraries for one attack, the *best
  implementation*; over every attack, the *ensemble robust accuracy*.
* Complementarity of two runs (AttackBench, ``analysis/utils.py``): among the initially
  correct samples, ``(only A + only B) / (only A + only B + neither)``, the share of
  the samples not broken by both that exactly one of them breaks; the *gain* of adding B to
  A is the robust accuracy it removes, ``only B / n``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from advharness.analytics.frames import (
    group_columns,
    groups,
    present,
    setting_columns,
    with_settings,
)
from advharness.analytics.intervals import wilson_interval

#: Worst case over the libraries of one attack (the best implementation).
OVER_LIBRARIES = ("library",)
#: Worst case over every attack (and library) of one model, norm, eps and targeting.
OVER_ATTACKS = ("library", "attack", "kind", "threat_model")


def _over(frame: pd.DataFrame, over: Sequence[str]) -> list[str]:
    """``over``, plus every setting column when attacks are pooled (a setting belongs to an
    attack)."""
    out = list(over)
    if "attack" in out:
        out += [c for c in setting_columns(frame) if c not in ("data_sha256",)]
    return out


def per_sample_worst_case(runs: pd.DataFrame) -> pd.DataFrame:
    """One group's runs (records of cells on one model and data) -> per ``sample``:
    ``correct``, ``broken`` (by any run within its eps), ``n_members``, ``n_broken_by``,
    ``robust``; ValueError when the runs disagree on which samples are correct."""
    per = runs.assign(
        broken=runs["success_at_eps"].astype(bool) & runs["correct"].astype(bool),
        correct=runs["correct"].astype(bool),
    )
    agg = per.groupby("sample", sort=True).agg(
        correct=("correct", "all"),
        correct_any=("correct", "any"),
        broken=("broken", "any"),
        n_members=("cell_key", "nunique"),
        n_broken_by=("broken", "sum"),
    )
    if (agg["correct"] != agg["correct_any"]).any():
        raise ValueError(
            "runs disagree on which samples the model classifies correctly: they are not on the "
            "same model and data (pass summary= so that data_sha256 groups them apart)"
        )
    agg["robust"] = agg["correct"] & ~agg["broken"]
    return agg.drop(columns="correct_any").reset_index()


def worst_case_samples(
    records: pd.DataFrame, over: Sequence[str] = OVER_LIBRARIES, summary: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per (group, sample): ``correct``, ``broken`` (some member run broke it within eps),
    ``n_members`` (runs covering the sample), ``n_broken_by``, ``robust`` (correct and not
    broken). The group is every identifying column of the records (with ``summary``, also
    the cells' settings) but those in ``over``."""
    recs = with_settings(records, summary)
    keys = group_columns(recs, exclude=_over(recs, over))
    parts = [per_sample_worst_case(runs).assign(**ident) for ident, runs in groups(recs, keys)]
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, ignore_index=True)
    return out[[*keys, *[c for c in out.columns if c not in keys]]]


def worst_case(
    records: pd.DataFrame,
    over: Sequence[str] = OVER_LIBRARIES,
    summary: pd.DataFrame | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Per group (see :func:`worst_case_samples`): ``n``, ``n_members``, ``members`` (the
    runs' ``over`` values, ``;``-separated), ``robust_accuracy`` (worst case, with a Wilson
    interval ``ci_low``/``ci_high``), ``best_member_robust_accuracy`` (the lowest robust
    accuracy of a single member run) and ``gain`` (how much lower the worst case is)."""
    recs = with_settings(records, summary)
    cols = _over(recs, over)
    keys = group_columns(recs, exclude=cols)
    rows = []
    for ident, runs in groups(recs, keys):
        samples = per_sample_worst_case(runs)
        n, k_robust = len(samples), int(samples["robust"].sum())
        low, high = wilson_interval(k_robust, n, confidence)
        member_ra, labels = [], []
        for member, cell in groups(runs, present(runs, [*cols, "cell_key"])):
            robust = cell["correct"].astype(bool) & ~cell["success_at_eps"].astype(bool)
            member_ra.append(float(robust.mean()))
            labels.append("/".join(str(member[c]) for c in present(runs, over)))
        ra = k_robust / n if n else float("nan")
        best = min(member_ra) if member_ra else float("nan")
        rows.append(
            {
                **ident,
                "n": n,
                "n_members": len(member_ra),
                "members": ";".join(dict.fromkeys(labels)),
                "robust_accuracy": ra,
                "ci_low": float(low),
                "ci_high": float(high),
                "best_member_robust_accuracy": best,
                "gain": best - ra,
            }
        )
    return pd.DataFrame(rows)


def best_implementation(records: pd.DataFrame, summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`worst_case` over the libraries of each attack setting: a sample is broken if
    any library broke it."""
    return worst_case(records, OVER_LIBRARIES, summary)


def ensemble_robust_accuracy(records: pd.DataFrame, summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`worst_case` over every attack and library of each model, norm, eps, targeting
    and seed (AutoAttack-style: the mean over samples of the min over attacks)."""
    return worst_case(records, OVER_ATTACKS, summary)


def complementarity(broken_a: Any, broken_b: Any, correct: Any = None) -> dict[str, float]:
    """Two runs' per-sample ``broken`` flags on the same samples (``correct``: the samples
    that count, default all): ``n``, ``both``, ``only_a``, ``only_b``, ``neither``,
    ``complementarity`` (see the module docstring; 0 when no sample is left to disagree
    on), ``gain_of_b`` (``only_b / n``: the robust accuracy B removes when added to A) and
    ``gain_of_a``."""
    a = np.asarray(broken_a, bool)
    b = np.asarray(broken_b, bool)
    keep = np.ones(len(a), bool) if correct is None else np.asarray(correct, bool)
    a, b = a & keep, b & keep
    n = len(keep)
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    neither = int((keep & ~a & ~b).sum())
    available = only_a + only_b + neither
    return {
        "n": n,
        "both": int((a & b).sum()),
        "only_a": only_a,
        "only_b": only_b,
        "neither": neither,
        "complementarity": (only_a + only_b) / available if available else 0.0,
        "gain_of_b": only_b / n if n else float("nan"),
        "gain_of_a": only_a / n if n else float("nan"),
    }


def pairwise_complementarity(
    records: pd.DataFrame, over: Sequence[str] = OVER_LIBRARIES, summary: pd.DataFrame | None = None
) -> pd.DataFrame:
    """:func:`complementarity` for every pair of member runs (``a``, ``b``: their ``over``
    values and ``cell_key_a``/``cell_key_b``) of each group (as in :func:`worst_case`),
    matched on ``sample``, with ``robust_accuracy_a``, ``robust_accuracy_b`` and
    ``robust_accuracy_both`` (the two together)."""
    recs = with_settings(records, summary)
    cols = _over(recs, over)
    keys = group_columns(recs, exclude=cols)
    rows = []
    for ident, grp in groups(recs, keys):
        members = list(groups(grp, present(grp, [*cols, "cell_key"])))
        for (ma, ca), (mb, cb) in combinations(members, 2):
            pair = ca[["sample", "correct", "success_at_eps"]].merge(
                cb[["sample", "correct", "success_at_eps"]], on="sample", suffixes=("_a", "_b")
            )
            correct = pair["correct_a"].to_numpy(bool) & pair["correct_b"].to_numpy(bool)
            res = complementarity(pair["success_at_eps_a"], pair["success_at_eps_b"], correct)
            n = res["n"]
            row: dict[str, Any] = {**ident}
            for side, m in (("a", ma), ("b", mb)):
                row.update({f"{c}_{side}": m[c] for c in present(grp, over)})
                row[f"cell_key_{side}"] = m["cell_key"]
            row.update(res)
            row["robust_accuracy_a"] = (correct.sum() - res["both"] - res["only_a"]) / n if n else np.nan
            row["robust_accuracy_b"] = (correct.sum() - res["both"] - res["only_b"]) / n if n else np.nan
            row["robust_accuracy_both"] = res["neither"] / n if n else np.nan
            rows.append(row)
    return pd.DataFrame(rows)
