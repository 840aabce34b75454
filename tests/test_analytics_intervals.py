"""Intervals, spread over seeds and telling rates apart, against hand-derived values and
scipy's independent implementations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from analytics_helpers import cell_records, summary_row
from scipy import stats

from advharness.analytics import (
    bootstrap_interval,
    compare_rates,
    rate_intervals,
    seed_spread,
    summary_intervals,
    two_proportion_test,
    wilson_interval,
)

Z = 1.959963984540054  # the 97.5 % normal quantile


def test_wilson_at_the_edges_by_hand() -> None:
    """k = 0: the interval is [0, z²/(n + z²)]; k = n: [n/(n + z²), 1] (the Wilson formula
    with p = 0 or 1 collapses to these)."""
    low, high = wilson_interval(0, 10)
    assert float(low) == 0.0
    assert float(high) == pytest.approx(Z * Z / (10 + Z * Z), rel=1e-12)
    low, high = wilson_interval(10, 10)
    assert float(low) == pytest.approx(10 / (10 + Z * Z), rel=1e-12)
    assert float(high) == pytest.approx(1.0)


@pytest.mark.parametrize(("k", "n"), [(45, 100), (3, 10), (1, 16), (15, 16), (500, 1000)])
def test_wilson_matches_scipy(k: int, n: int) -> None:
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson_interval(k, n)
    assert float(low) == pytest.approx(ref.low, abs=1e-12)
    assert float(high) == pytest.approx(ref.high, abs=1e-12)
    ref90 = stats.binomtest(k, n).proportion_ci(confidence_level=0.9, method="wilson")
    assert float(wilson_interval(k, n, 0.9)[0]) == pytest.approx(ref90.low, abs=1e-12)


def test_wilson_is_elementwise_and_nan_without_samples() -> None:
    low, high = wilson_interval([0, 3, 0], [10, 10, 0])
    assert low.shape == (3,) and np.isnan(low[2]) and np.isnan(high[2])
    assert low[0] == 0.0 and 0 < low[1] < 0.3 < high[1] < 1


def test_summary_intervals_use_the_right_denominators() -> None:
    """Success rates over ``n_correct``, robust accuracies over ``n``; NaN rates (a failed
    cell) get NaN intervals."""
    s = pd.DataFrame(
        [
            summary_row(success_rate=0.5, robust_accuracy=3 / 8, n=8, n_correct=6),
            summary_row(status="error", success_rate=float("nan"), robust_accuracy=float("nan")),
        ]
    )
    out = summary_intervals(s)
    assert "success_rate_ci_low" not in s  # the input is left alone
    sr = stats.binomtest(3, 6).proportion_ci(method="wilson")
    ra = stats.binomtest(3, 8).proportion_ci(method="wilson")
    assert out.loc[0, "success_rate_ci_low"] == pytest.approx(sr.low)
    assert out.loc[0, "success_rate_ci_high"] == pytest.approx(sr.high)
    assert out.loc[0, "robust_accuracy_ci_low"] == pytest.approx(ra.low)
    assert out.loc[0, "robust_accuracy_ci_high"] == pytest.approx(ra.high)
    assert out.loc[1, ["success_rate_ci_low", "robust_accuracy_ci_high"]].isna().all()
    assert "success_rate_at_eps_ci_low" not in out  # no such rate in this summary


def test_bootstrap_interval() -> None:
    values = np.array([1.0] * 30 + [0.0] * 70)
    low, high = bootstrap_interval(values, n_resamples=4000, seed=1)
    assert low < 0.3 < high
    # for 100 0/1 outcomes the percentile bootstrap is close to the Wilson interval
    w_low, w_high = wilson_interval(30, 100)
    assert abs(low - float(w_low)) < 0.03 and abs(high - float(w_high)) < 0.03
    assert bootstrap_interval(values, n_resamples=4000, seed=1) == (low, high)
    assert bootstrap_interval(np.ones(5)) == (1.0, 1.0)
    assert all(math.isnan(v) for v in bootstrap_interval([]))


def test_rate_intervals_per_row() -> None:
    """5 samples, 4 correct, 2 broken within eps: success 2/4, robust 2/5."""
    recs = cell_records(
        "a",
        correct=[True, True, True, True, False],
        success=[True, True, True, False, False],
        success_at_eps=[True, True, False, False, False],
        dist=[0.1, 0.2, 0.9, 0.0, 0.0],
        eps=0.5,
    )
    out = rate_intervals(recs)
    row = out.iloc[0]
    assert (row["n"], row["n_correct"], row["n_success"]) == (5, 4, 2)
    assert row["success_rate"] == 0.5 and row["robust_accuracy"] == pytest.approx(0.4)
    ref = stats.binomtest(2, 5).proportion_ci(method="wilson")
    assert row["robust_accuracy_ci_low"] == pytest.approx(ref.low)
    boot = rate_intervals(recs, method="bootstrap", n_resamples=500).iloc[0]
    assert boot["success_rate_ci_low"] <= 0.5 <= boot["success_rate_ci_high"]
    with pytest.raises(ValueError, match="method"):
        rate_intervals(recs, method="normal")


def test_seed_spread_is_mean_and_sample_sd() -> None:
    s = pd.DataFrame(
        [
            summary_row(cell=i, cell_key=f"k{i}", run_seed=i, success_rate=v, robust_accuracy=1 - v)
            for i, v in enumerate([0.2, 0.4, 0.9])
        ]
        + [summary_row(cell=3, cell_key="f", library="foolbox", success_rate=0.5, robust_accuracy=0.5)]
    )
    out = seed_spread(s, metrics=("success_rate",))
    art = out[out["library"] == "art"].iloc[0]
    assert art["n_seeds"] == 3
    assert art["success_rate_mean"] == pytest.approx(0.5)
    # sd with ddof=1: deviations -0.3, -0.1, 0.4 -> sqrt((0.09 + 0.01 + 0.16) / 2)
    assert art["success_rate_sd"] == pytest.approx(math.sqrt(0.13))
    fb = out[out["library"] == "foolbox"].iloc[0]
    assert fb["n_seeds"] == 1 and math.isnan(fb["success_rate_sd"])


def test_two_proportion_z_test_matches_the_chi2_test() -> None:
    """The pooled z-test is the uncorrected chi² test of the 2x2 table (z² = χ²)."""
    p, test = two_proportion_test(60, 100, 45, 100)
    _, ref_p, _, _ = stats.chi2_contingency([[60, 40], [45, 55]], correction=False)
    assert test == "z" and p == pytest.approx(ref_p, rel=1e-9)


def test_small_counts_use_fishers_exact_test() -> None:
    """3/3 against 0/3: of the C(6,3) = 20 equally likely tables with these margins, only the
    observed one and its mirror are as extreme, each 1/20: p = 0.1."""
    p, test = two_proportion_test(3, 3, 0, 3)
    assert test == "fisher" and p == pytest.approx(0.1)


def test_compare_rates_says_when_rates_are_indistinguishable() -> None:
    close = compare_rates(45, 100, 50, 100)
    assert close["intervals_overlap"] and not close["distinguishable"]
    apart = compare_rates(20, 100, 60, 100)
    assert not apart["intervals_overlap"] and apart["distinguishable"] and apart["p_value"] < 1e-6
    # overlapping 95 % intervals, yet different at alpha 0.05: the test decides
    edge = compare_rates(50, 100, 64, 100)
    assert edge["intervals_overlap"] and edge["distinguishable"]


def test_the_head_to_head_table_shows_the_intervals() -> None:
    """3 of 6 correct samples broken: Wilson p = 1/2, z²/n = 0.640, center 1/2, half-width
    1.96·sqrt(1/24 + 3.8415/144)/1.640 = 0.312 -> [19-81]; robust 3 of 8: center
    (0.375 + 0.240)/1.480 = 0.416, half 1.96·sqrt(0.0293 + 0.0150)/1.480 = 0.279 -> [14-69].
    With two seeds the entry is mean ± sd instead; 249/250 shows one decimal, not 100%."""
    from advharness.reporting.render import cell_lines, to_csv
    from advharness.reporting.tables import table_rows

    one = summary_intervals(pd.DataFrame([summary_row(success_rate=0.5, robust_accuracy=3 / 8)]))
    lines, _ = cell_lines(table_rows(one)[0].cells[("art", "torch")], {})
    assert lines[:2] == ["SR 50% [19-81]", "RA 38% [14-69]"]
    assert "art/torch/robust_accuracy_ci_high" in to_csv(one).splitlines()[0]
    two = summary_intervals(
        pd.DataFrame(
            [
                summary_row(cell=0, cell_key="a", run_seed=0, success_rate=0.5, robust_accuracy=0.375),
                summary_row(cell=1, cell_key="b", run_seed=1, success_rate=0.7, robust_accuracy=0.25),
            ]
        )
    )
    cell = table_rows(two)[0].cells[("art", "torch")]
    assert cell_lines(cell, {})[0][0] == f"SR 60±{100 * float(np.std([0.5, 0.7], ddof=1)):.0f}%"
    assert math.isnan(cell.values["success_rate_ci_low"])
    high = summary_intervals(
        pd.DataFrame([summary_row(n=250, n_correct=250, success_rate=0.996, robust_accuracy=0.004)])
    )
    lines, _ = cell_lines(table_rows(high)[0].cells[("art", "torch")], {})
    assert lines[0].startswith("SR 99.6% [") and lines[1].startswith("RA 0.4% [")
