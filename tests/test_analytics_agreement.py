"""Agreement between libraries: McNemar, the paired Wilcoxon test and the rank-biserial
effect against hand-computed values; the verdicts on constructed pairs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from analytics_helpers import cell_records, summary_row

from advharness.analytics import (
    library_agreement,
    max_abs_difference,
    mcnemar,
    paired_distance_test,
    rank_biserial,
)


def test_mcnemar_exact_by_hand() -> None:
    """b = 1 sample broken by A only, c = 7 by B only: under H0 b ~ Bin(8, 1/2); the
    two-sided exact p = 2 · P(b <= 1) = 2 · (1 + 8) / 256."""
    a = [True] + [False] * 7 + [True] * 5
    b = [False] + [True] * 7 + [True] * 5
    res = mcnemar(a, b)
    assert (res["only_a"], res["only_b"], res["test"]) == (1, 7, "exact")
    assert res["p_value"] == pytest.approx(18 / 256)
    assert mcnemar([True, False], [True, False])["p_value"] == 1.0


def test_mcnemar_chi2_by_hand() -> None:
    """b = 10, c = 30 (40 discordant pairs): χ² = (|10 - 30| - 1)² / 40 = 9.025, and the
    χ²(1) tail is erfc(sqrt(x / 2))."""
    a = np.array([True] * 10 + [False] * 30)
    res = mcnemar(a, ~a)
    assert res["test"] == "chi2" and res["statistic"] == pytest.approx(9.025)
    assert res["p_value"] == pytest.approx(math.erfc(math.sqrt(9.025 / 2)), rel=1e-9)


def test_wilcoxon_exact_p_and_rank_biserial_by_hand() -> None:
    """Differences 1, -2, 3, 4, 5, 6 (no ties, no zeros): W- = 2 (the rank of |-2|). Of the
    2^6 = 64 equally likely sign patterns, W- <= 2 for 3 ({}, {1}, {2}): two-sided exact
    p = 2 · 3/64. Rank-biserial: (W+ - W-) / 21 = (19 - 2) / 21."""
    b = np.full(6, 10.0)
    a = b + np.array([1.0, -2.0, 3.0, 4.0, 5.0, 6.0])
    res = paired_distance_test(a, b)
    assert res["p_value"] == pytest.approx(6 / 64)
    assert res["statistic"] == pytest.approx(2.0)
    assert res["rank_biserial"] == pytest.approx(17 / 21)
    assert res["median_difference"] == pytest.approx(3.5)
    # all 6 differences positive: p = 2/64, r = 1
    allpos = paired_distance_test(b + 1 + np.arange(6), b)
    assert allpos["p_value"] == pytest.approx(2 / 64) and allpos["rank_biserial"] == 1.0
    same = paired_distance_test(b, b)
    assert same["p_value"] == 1.0 and math.isnan(same["rank_biserial"])
    assert math.isnan(paired_distance_test([], [])["p_value"])


def test_rank_biserial_ties_take_mean_ranks() -> None:
    """|d| = 1, 1, 2: ranks 1.5, 1.5, 3; W+ = 1.5 + 3, W- = 1.5 -> r = 3 / 6."""
    assert rank_biserial([1.0, -1.0, 2.0, 0.0]) == pytest.approx(0.5)


def test_max_abs_difference() -> None:
    x = np.zeros((2, 1, 3, 3), np.float32)
    y = x.copy()
    y[1, 0, 2, 1] = -0.25
    assert max_abs_difference(x, y) == 0.25
    assert math.isnan(max_abs_difference(x, y[:1]))


N = 40
CORRECT = [True] * (N - 4) + [False] * 4


def _pair(success_b: list[bool], dist_b: list[float], success_a: list[bool] | None = None) -> pd.DataFrame:
    success_a = success_a or [True] * (N - 10) + [False] * 10
    dist_a = list(0.5 + 0.01 * np.arange(N))
    common: dict[str, Any] = dict(correct=CORRECT, attack="deepfool", kind="minimal", norm="l2")
    return pd.concat(
        [
            cell_records("a", cell=0, library="art", success=success_a, dist=dist_a, **common),
            cell_records("b", cell=1, library="foolbox", success=success_b, dist=dist_b, **common),
        ],
        ignore_index=True,
    )


BASE_SUCCESS = [True] * (N - 10) + [False] * 10
BASE_DIST = list(0.5 + 0.01 * np.arange(N))


def test_identical_pair() -> None:
    out = library_agreement(_pair(BASE_SUCCESS, BASE_DIST))
    row = out.iloc[0]
    assert row["verdict"] == "identical" and row["agreement"] == 1.0
    assert (row["library_a"], row["library_b"]) == ("art", "foolbox")
    assert row["n"] == N - 4 and row["n_both"] == N - 10
    # within float tolerance is still identical; the arrays, when given, must agree too
    nudged = library_agreement(_pair(BASE_SUCCESS, [d * (1 + 1e-7) for d in BASE_DIST]))
    assert nudged["verdict"].iloc[0] == "identical"
    x = np.zeros((N, 4), np.float32)
    apart = library_agreement(_pair(BASE_SUCCESS, BASE_DIST), adversarials={"a": x, "b": x + 0.01})
    assert apart["max_abs_x_adv_difference"].iloc[0] == pytest.approx(0.01)
    assert apart["verdict"].iloc[0] == "equivalent"


def test_equivalent_pair() -> None:
    """One sample of 36 flips (agreement 35/36 >= 0.9; McNemar p = 1) and the distances
    differ by alternating signs ±0.001·k (W+ ≈ W-, Wilcoxon p far above 0.01)."""
    success = list(BASE_SUCCESS)
    success[N - 10] = True  # B also breaks a sample A does not
    noise = [(-1) ** k * 0.001 * (k % 5 + 1) for k in range(N)]
    out = library_agreement(_pair(success, [d + e for d, e in zip(BASE_DIST, noise, strict=True)]))
    row = out.iloc[0]
    assert row["verdict"] == "equivalent", row.to_dict()
    assert row["agreement"] == pytest.approx(35 / 36)
    assert row["only_b"] == 1 and row["mcnemar_p"] == 1.0 and row["wilcoxon_p"] > 0.1
    assert row["stronger"] == ""


def test_differs_in_success_names_the_stronger_library() -> None:
    """A breaks 10 samples B does not: McNemar exact p = 2/2^10 < 0.01."""
    success = [True] * (N - 20) + [False] * 20
    row = library_agreement(_pair(success, BASE_DIST)).iloc[0]
    assert row["verdict"] == "differs" and row["stronger"] == "art"
    assert row["mcnemar_p"] == pytest.approx(2 / 2**10)
    assert row["evidence"].startswith("mcnemar p=")


def test_differs_in_distances_names_the_smaller_perturbations() -> None:
    """Same successes; B's perturbations 10 % larger on all 30 common samples: Wilcoxon
    p = 2/2^30; A is stronger (smaller distances), r = -1 (A's always the smaller)."""
    row = library_agreement(_pair(BASE_SUCCESS, [d * 1.1 for d in BASE_DIST])).iloc[0]
    assert row["verdict"] == "differs" and row["stronger"] == "art"
    assert row["wilcoxon_p"] == pytest.approx(2 / 2**30)
    assert row["rank_biserial"] == -1.0 and row["median_difference"] < 0
    assert row["evidence"].startswith("wilcoxon p=")


def test_low_agreement_without_a_winner_differs_with_no_stronger_side() -> None:
    """A and B each break 3 samples the other does not: McNemar p = 1, agreement 30/36."""
    a = [True] * (N - 10) + [False] * 10
    b = list(a)
    for i in range(3):
        b[i], b[N - 10 + i] = False, True
    row = library_agreement(_pair(b, BASE_DIST, a)).iloc[0]
    assert row["verdict"] == "differs" and row["stronger"] == "neither"
    assert row["agreement"] == pytest.approx(30 / 36)


def test_several_cells_of_one_library_need_the_summary() -> None:
    recs = _pair(BASE_SUCCESS, BASE_DIST)
    extra = recs[recs["library"] == "art"].assign(cell=2, cell_key="c")
    both = pd.concat([recs, extra], ignore_index=True)
    with pytest.raises(ValueError, match="pass summary"):
        library_agreement(both)
    summary = pd.DataFrame(
        [
            summary_row(cell=0, cell_key="a", attack="deepfool", steps=10),
            summary_row(cell=1, cell_key="b", attack="deepfool", library="foolbox", steps=10),
            summary_row(cell=2, cell_key="c", attack="deepfool", steps=20),
        ]
    )
    out = library_agreement(both, summary)
    assert len(out) == 1 and out["cell_key_a"].iloc[0] == "a"
