"""Sanity checks on minimum-norm attacks: without a bound they must break every initially
correct sample (Pintor et al. 2022, "Indicators of Attack Failure", I6), and a white-box one
should not be dominated by another attack at every radius (AttackBench, Cinà et al. 2024).
Each function takes the checks' :class:`~advharness.analytics.checks_base.Frames` and
returns its findings; the registry (:mod:`advharness.analytics.checks`) states each rule,
threshold and source.
"""

from __future__ import annotations

from itertools import product

import numpy as np
import pandas as pd

from advharness.analytics.checks_base import (
    Finding,
    Frames,
    at,
    cells,
    is_white_box,
    labels,
    listed,
    per_sample,
    pool_groups,
    sample_ids,
    where,
)
from advharness.analytics.distances import distance_cdf, per_sample_distances, step_radii
from advharness.analytics.frames import one_per_sample, present
from advharness.analytics.optimality import optimality_of

#: A minimum-norm curve is dominated when it is nowhere below another's and covers less than
#: this share of the area between "no attack" and the other's curve (its local optimality
#: against the other, :func:`~advharness.analytics.optimality.optimality_of`).
DOMINANCE_OPTIMALITY = 0.9
#: Minimum-norm attacks with a built-in bound (JSMA changes at most ``gamma`` of the
#: features): they may fail by design, so the 100 % rule does not apply.
BOUNDED_MINIMAL = ("jsma",)


def _minimal_white(summary: pd.DataFrame) -> pd.Series:
    return (summary["kind"] == "minimal") & is_white_box(summary) & ~summary["attack"].isin(BOUNDED_MINIMAL)


def minimum_norm_below_100(frames: Frames) -> list[Finding]:
    """A white-box minimum-norm cell (not :data:`BOUNDED_MINIMAL`) that left an initially
    correct sample not adversarial, whatever its norm (Indicator I6)."""
    s = frames.summary
    if s.empty:
        return []
    rows = s[_minimal_white(s)].drop_duplicates("cell_key")
    names = labels(s)
    out = []
    for _, row in rows.iterrows():
        rate, key = float(row["success_rate"]), str(row["cell_key"])
        if not int(row["n_correct"]) or np.isnan(rate) or rate >= 1.0:
            continue
        mine = frames.records[frames.records["cell_key"] == key] if len(frames.records) else pd.DataFrame()
        failed = (
            ()
            if mine.empty
            else sample_ids(per_sample(one_per_sample(mine), "success").query("correct and not broken").index)
        )
        n_failed = round((1 - rate) * int(row["n_correct"]))
        out.append(
            Finding(
                (key,),
                rate,
                f"{names.get(key, key)} succeeded on {rate:.0%} of the initially correct samples "
                f"without a bound ({where({**row, 'eps': None})}); not adversarial: "
                + (listed(failed) if failed else f"{n_failed} samples"),
                **at({**row, "eps": float("nan")}),
                samples=failed,
            )
        )
    return out


def minimum_norm_dominated(frames: Frames) -> list[Finding]:
    """A white-box minimum-norm cell whose robust accuracy over its per-sample distances is
    nowhere below another cell's (same model, norm, targeting, seed, data; matched samples),
    with a local optimality against it below :data:`DOMINANCE_OPTIMALITY`."""
    recs = frames.records
    if recs.empty:
        return []
    names = labels(frames.summary)
    white = set(frames.summary.loc[_minimal_white(frames.summary), "cell_key"].astype(str))
    out = []
    for ident, grp in pool_groups(one_per_sample(recs), eps=False):
        dist = per_sample_distances(grp, frames.summary)
        if dist.empty:
            continue
        by_key = cells(dist)
        for ka, kb in product(by_key, by_key):
            if ka == kb or ka not in white:
                continue
            gap = _dominance(by_key[ka], by_key[kb])
            if gap is None:
                continue
            value, n = gap
            out.append(
                Finding(
                    (ka,),
                    value,
                    f"{names.get(ka, ka)} is dominated by {names.get(kb, kb)}: its robust accuracy is "
                    f"nowhere lower, and its local optimality against it is {value:.2f} over {n} "
                    f"samples ({where(ident)})",
                    **at({**ident, "eps": float("nan")}),
                    references=(kb,),
                )
            )
    return out


def _dominance(a: pd.DataFrame, b: pd.DataFrame) -> tuple[float, int] | None:
    """``(a's local optimality against b, n)`` on their common samples when ``a``'s
    robust-accuracy curve is nowhere below ``b``'s and that optimality is below
    :data:`DOMINANCE_OPTIMALITY`, else None."""
    keys = present(a, ("sample", "target"))
    common = a[keys].merge(b[keys], on=keys)
    if common.empty:
        return None
    a = a.merge(common, on=keys)
    b = b.merge(common, on=keys)
    radii = step_radii(np.concatenate([a["distance"].to_numpy(), b["distance"].to_numpy()]))
    cdf = distance_cdf(pd.concat([a, b], ignore_index=True), radii)
    ra_a = cdf[cdf["cell_key"] == a["cell_key"].iloc[0]]["robust_accuracy"].to_numpy()
    ra_b = cdf[cdf["cell_key"] == b["cell_key"].iloc[0]]["robust_accuracy"].to_numpy()
    if (ra_a < ra_b - 1e-12).any():
        return None
    lo = optimality_of(a["distance"].to_numpy(), b["distance"].to_numpy())["local_optimality"]
    if np.isnan(lo) or lo >= DOMINANCE_OPTIMALITY:
        return None
    return float(lo), len(common)
