"""Sanity checks that compare fixed-budget attacks with each other (Carlini et al. 2019, "On
Evaluating Adversarial Robustness", arXiv 1902.06705, §5): a single-step attack must not
beat an iterative one, nor a weaker-access attack (black-box, transfer, random noise) the
white-box ones, and success must grow with the budget, up to random guessing. Each function takes the checks'
:class:`~advharness.analytics.checks_base.Frames` and returns its findings; the registry
(:mod:`advharness.analytics.checks`) states each rule, threshold and source.
"""

from __future__ import annotations

from itertools import product
from typing import Any

import pandas as pd

from advharness.analytics.checks_base import (
    Finding,
    Frames,
    at,
    cells,
    first,
    is_white_box,
    labels,
    listed,
    matched,
    per_sample,
    pool_groups,
    sample_ids,
    where,
)
from advharness.analytics.curves import POINT_COLUMNS, security_curves
from advharness.analytics.frames import one_per_sample, present
from advharness.analytics.intervals import compare_rates
from advharness.judging.referee import NOISE_ATTACK, flag_gradient_masking

#: Single-step attacks and the iterative attacks that must beat them (white-box, fixed budget).
SINGLE_STEP = ("fgsm", "fgm")
ITERATIVE = ("pgd", "bim", "mim", "apgd", "ddn")
#: Significance level of the two-proportion tests (:func:`~advharness.analytics.intervals.compare_rates`).
ALPHA = 0.05
#: Robust accuracy may exceed random guessing by this much at a large eps.
CHANCE_TOLERANCE = 0.1
#: An L-inf eps is large from this share of the input range ``high - low`` on: at half the
#: range every input can reach the same mid-range image, so no model can beat guessing.
LARGE_LINF_SHARE = 0.5


def _single_iterative_pairs(
    frames: Frames,
) -> list[tuple[dict[str, Any], str, pd.DataFrame, str, pd.DataFrame]]:
    """``(group, single key, its records, iterative key, its records)`` for every pair of
    white-box fixed-budget cells on the same model, norm, eps, targeting, seed and data."""
    recs = frames.records
    if recs.empty:
        return []
    recs = recs[is_white_box(recs) & (recs["kind"] == "fixed")]
    out = []
    for ident, grp in pool_groups(recs):
        by_key = cells(grp)
        singles = [(k, c) for k, c in by_key.items() if first(c, "attack") in SINGLE_STEP]
        iters = [(k, c) for k, c in by_key.items() if first(c, "attack") in ITERATIVE]
        out += [(ident, ks, cs, ki, ci) for (ks, cs), (ki, ci) in product(singles, iters)]
    return out


def single_step_beats_iterative_samples(frames: Frames) -> list[Finding]:
    """Samples a single-step attack broke that an iterative attack did not (same model,
    norm, eps, targeting, seed and data; any sample)."""
    names = labels(frames.summary)
    out = []
    for ident, ks, cs, ki, ci in _single_iterative_pairs(frames):
        m = matched(cs, ci)
        only = sample_ids(m.index[m["broken_a"] & ~m["broken_b"]])
        if only:
            out.append(
                Finding(
                    (ki,),
                    float(len(only)),
                    f"{names.get(ks, ks)} broke {len(only)} of {len(m)} samples that "
                    f"{names.get(ki, ki)} did not ({where(ident)}): {listed(only)}",
                    **at(ident),
                    samples=only,
                    references=(ks,),
                )
            )
    return out


def single_step_beats_iterative_rate(frames: Frames) -> list[Finding]:
    """A single-step attack's success rate above an iterative attack's, distinguishable by
    :func:`~advharness.analytics.intervals.compare_rates` at :data:`ALPHA`."""
    names = labels(frames.summary)
    out = []
    for ident, ks, cs, ki, ci in _single_iterative_pairs(frames):
        a, b = per_sample(cs), per_sample(ci)
        k_a, n_a, k_b, n_b = (
            int(a["broken"].sum()),
            int(a["correct"].sum()),
            int(b["broken"].sum()),
            int(b["correct"].sum()),
        )
        test = compare_rates(k_a, n_a, k_b, n_b, alpha=ALPHA)
        if test["rate_a"] > test["rate_b"] and test["distinguishable"]:
            out.append(
                Finding(
                    (ki,),
                    float(test["rate_a"] - test["rate_b"]),
                    f"{names.get(ks, ks)} success {test['rate_a']:.0%} > {names.get(ki, ki)} "
                    f"{test['rate_b']:.0%} ({where(ident)}; {test['test']} p={test['p_value']:.2g})",
                    **at(ident),
                    references=(ks,),
                )
            )
    return out


def _curves(frames: Frames) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """The security curves of the summary (points at the cells' eps or reporting radii),
    each as ``(identity, points sorted by eps)``, clean point left out."""
    curves = security_curves(frames.summary)
    if curves.empty:
        return []
    curves = curves[curves["point"] != "clean"]
    ident = [c for c in curves.columns if c not in POINT_COLUMNS]
    out = []
    for key, pts in curves.groupby(ident, dropna=False, sort=False):
        vals = key if isinstance(key, tuple) else (key,)
        out.append((dict(zip(ident, vals, strict=True)), pts.sort_values("eps", kind="stable")))
    return out


def success_not_monotone(frames: Frames) -> list[Finding]:
    """A fixed-budget attack's robust accuracy at a larger eps above its lowest at a smaller
    eps (same model, attack, library and settings), distinguishable at :data:`ALPHA`."""
    names = labels(frames.summary)
    out = []
    for ident, pts in _curves(frames):
        pts = pts[pts["point"] == "cell"]
        best: pd.Series | None = None
        for _, p in pts.iterrows():
            if best is not None and p["eps"] > best["eps"] and p["robust_accuracy"] > best["robust_accuracy"]:
                test = compare_rates(
                    int(p["n_robust"]), int(p["n"]), int(best["n_robust"]), int(best["n"]), alpha=ALPHA
                )
                if test["distinguishable"]:
                    key = str(p["cell_key"])
                    out.append(
                        Finding(
                            (key,),
                            float(p["robust_accuracy"] - best["robust_accuracy"]),
                            f"{names.get(key, key)} robust accuracy rises from {best['robust_accuracy']:.0%} "
                            f"at eps={best['eps']:g} to {p['robust_accuracy']:.0%} at eps={p['eps']:g} "
                            f"({where({**ident, 'eps': None})}; {test['test']} p={test['p_value']:.2g})",
                            **at({**ident, "eps": p["eps"]}),
                            references=(str(best["cell_key"]),),
                        )
                    )
            if best is None or p["robust_accuracy"] < best["robust_accuracy"]:
                best = p
    return out


def is_large_eps(norm: str, eps: float, low: float, high: float, large_eps: dict[str, float] | Any) -> bool:
    """Whether ``eps`` is large: at least the caller's ``large_eps[norm]``; without one, an
    L-inf eps of at least :data:`LARGE_LINF_SHARE` of the input range (other norms: never)."""
    if norm in large_eps:
        return bool(eps >= float(large_eps[norm]))
    return norm == "linf" and bool(eps >= LARGE_LINF_SHARE * (high - low) * (1 - 1e-6))


def chance_levels(frames: Frames) -> dict[str, tuple[float, int]]:
    """Per model, the accuracy of guessing, ``max(1/K, share of the most frequent label)``,
    and ``K``: the summary's ``nb_classes`` when present, else the largest label + 1 in the
    records (a lower bound of K, so a lenient level)."""
    out: dict[str, tuple[float, int]] = {}
    recs = frames.records
    for model in frames.summary["model"].unique():
        rows = frames.summary[frames.summary["model"] == model]
        mine = recs[recs["model"] == model] if len(recs) and "label" in recs.columns else pd.DataFrame()
        mine = one_per_sample(mine) if len(mine) else mine
        if len(mine):
            mine = mine.drop_duplicates(present(mine, ["data_sha256", "sample"]))
        k = int(pd.to_numeric(rows["nb_classes"]).max()) if "nb_classes" in rows.columns else 0
        if not k and len(mine):
            k = int(mine["label"].max()) + 1
        if k < 2:
            continue
        majority = float(mine["label"].value_counts(normalize=True).max()) if len(mine) else 0.0
        out[str(model)] = (max(1.0 / k, majority), k)
    return out


def accuracy_above_chance(frames: Frames) -> list[Finding]:
    """A white-box attack's robust accuracy at its curve's largest eps above guessing +
    :data:`CHANCE_TOLERANCE`, when that eps is large (:func:`is_large_eps`). Black-box
    attacks stop at their budget and may fail there."""
    names = labels(frames.summary)
    bounds = frames.summary.drop_duplicates("cell_key").set_index("cell_key")
    chance = chance_levels(frames)
    out = []
    for ident, pts in _curves(frames):
        if ident.get("threat_model", "white-box") != "white-box" or ident.get("attack") == NOISE_ATTACK:
            continue
        last = pts.iloc[-1]
        key, model = str(last["cell_key"]), str(ident.get("model"))
        low, high = _bounds(bounds, key)
        if model not in chance or not is_large_eps(
            str(ident["norm"]), float(last["eps"]), low, high, frames.large_eps
        ):
            continue
        level, k = chance[model]
        if last["robust_accuracy"] > level + CHANCE_TOLERANCE:
            out.append(
                Finding(
                    (key,),
                    float(last["robust_accuracy"]),
                    f"{names.get(key, key)} leaves robust accuracy {last['robust_accuracy']:.0%} at the "
                    f"large eps={last['eps']:g} ({where({**ident, 'eps': None})}): guessing gets "
                    f"{level:.0%} (K={k}) + {CHANCE_TOLERANCE:g}",
                    **at({**ident, "eps": last["eps"]}),
                )
            )
    return out


def _bounds(summary: pd.DataFrame, key: str) -> tuple[float, float]:
    """A cell's input bounds (``summary`` indexed by ``cell_key``); (0, 1) when unknown."""
    row = summary.loc[[key]].iloc[0]
    low = pd.to_numeric(row.get("bounds_low", 0.0))
    high = pd.to_numeric(row.get("bounds_high", 1.0))
    return float(low), float(high)


def weaker_access_beats_white_box_samples(frames: Frames) -> list[Finding]:
    """Samples a black-box, transfer or noise cell broke that no white-box cell on the same
    model, norm, eps, targeting, seed and data broke (any sample)."""
    recs = frames.records
    if recs.empty:
        return []
    names = labels(frames.summary)
    out = []
    for ident, grp in pool_groups(recs):
        white = grp[is_white_box(grp)]
        weak = grp[~is_white_box(grp)]
        if white.empty or weak.empty:
            continue
        per_white = pd.concat([per_sample(c)["broken"] for c in cells(white).values()])
        any_white = per_white.groupby(level=list(per_white.index.names)).any()
        for key, cell in cells(weak).items():
            mine = per_sample(cell)
            both = mine.join(any_white.rename("white"), how="inner")
            only = sample_ids(both.index[both["broken"] & ~both["white"]])
            if only:
                whites = ", ".join(names.get(k, k) for k in cells(white))
                out.append(
                    Finding(
                        (key,),
                        float(len(only)),
                        f"{names.get(key, key)} broke {len(only)} samples no white-box attack broke "
                        f"({whites}; {where(ident)}): {listed(only)}",
                        **at(ident),
                        samples=only,
                        references=tuple(cells(white)),
                    )
                )
    return out


def weaker_access_beats_white_box_rate(frames: Frames) -> list[Finding]:
    """The summary's ``beats_white_box`` flag
    (:func:`~advharness.judging.referee.flag_gradient_masking`): a black-box, transfer or
    noise cell's success rate at eps above every white-box cell's."""
    s = frames.summary
    if s.empty:
        return []
    flags = flag_gradient_masking(s)
    names = labels(s)
    keys = present(s, ("model", "norm", "eps", "targeted"))
    white = s[is_white_box(s) & s["eps"].notna()]
    out = []
    for _, row in s[flags].iterrows():
        same = white[(white[keys] == row[keys]).all(axis=1)]
        best = same.sort_values("success_rate_at_eps", kind="stable").iloc[-1]
        key, key_w = str(row["cell_key"]), str(best["cell_key"])
        out.append(
            Finding(
                (key,),
                float(row["success_rate_at_eps"] - best["success_rate_at_eps"]),
                f"{names.get(key, key)} success {row['success_rate_at_eps']:.0%} > the best white-box "
                f"{names.get(key_w, key_w)} {best['success_rate_at_eps']:.0%} ({where(row)})",
                **at(row),
                references=tuple(dict.fromkeys(same["cell_key"].astype(str))),
            )
        )
    return out
