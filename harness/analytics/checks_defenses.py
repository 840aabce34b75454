"""Sanity checks on defended models: a defense that looks strong only against the attacks
that do not adapt to it (Athalye et al. 2018; Tramer et al. 2020). The registry
(:mod:`advharness.analytics.checks`) states the rule, threshold and source."""

from __future__ import annotations

import pandas as pd

from advharness.analytics.checks_base import Finding, Frames
from advharness.analytics.defenses import defense_cells, defense_worst_case
from advharness.analytics.intervals import compare_rates

#: Significance level of the two-proportion test.
ALPHA = 0.05
#: The categories compared with the non-adaptive white-box attacks.
STRONGER = ("adaptive", "black-box", "transfer")


def over_credited(frames: Frames) -> list[Finding]:
    """Per defended model and setting: an adaptive, black-box or transfer attack broke a
    larger share of the samples than every non-adaptive white-box attack together,
    distinguishably (:func:`compare_rates` at :data:`ALPHA`). Flags the non-adaptive cells."""
    worst = defense_worst_case(frames.summary, frames.records)
    if worst.empty:
        return []
    cells = defense_cells(frames.summary, frames.records)
    out = []
    for _, w in worst.iterrows():
        n = int(w["n_correct"])
        base = w["non-adaptive_success_rate"]
        if not n or pd.isna(base):
            continue
        for cat in STRONGER:
            rate = w[f"{cat}_success_rate"]
            if pd.isna(rate) or rate <= base:
                continue
            test = compare_rates(round(rate * n), n, round(base * n), n, alpha=ALPHA)
            if not test["distinguishable"]:
                continue
            mine = cells[
                (cells["defended_model"] == w["defended_model"])
                & (cells["norm"] == w["norm"])
                & (cells["eps"] == w["eps"])
                & (cells["category"] == "non-adaptive")
            ]
            out.append(
                Finding(
                    tuple(dict.fromkeys(mine["cell_key"].astype(str))),
                    float(rate - base),
                    f"{w['defended_model']}: {cat} attacks break {rate:.0%} of the correct samples, the "
                    f"non-adaptive white-box ones {base:.0%} ({w['norm']} eps={float(w['eps']):g}; "
                    f"{test['test']} p={test['p_value']:.2g}): the non-adaptive numbers over-credit "
                    "the defense",
                    model=str(w["defended_model"]),
                    norm=str(w["norm"]),
                    eps=float(w["eps"]),
                )
            )
            break
    return out
