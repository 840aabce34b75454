"""What one side of an expectation measures (:mod:`advharness.analytics.measurement`):
pooled rates whose interval counts distinct samples, the per-sample worst case over the
selected cells (``worst_case: true``) and AttackBench's ``local_optimality``, each on
hand-built results made to satisfy or violate the expectation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from checks_helpers import cell, run
from conftest import errors_of, exp_dict

from advharness.analytics.expectations import check_expectations
from advharness.analytics.intervals import wilson_interval

N = 40


def _check(summary: pd.DataFrame, records: pd.DataFrame, **entry: Any) -> pd.Series:
    table = check_expectations(summary, records, [{"source": "a paper", **entry}])
    row: pd.Series = table.iloc[0]
    return row


def _libraries(data: tuple[str, str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """FGSM in three libraries, each breaking the same 10 of 40 samples, on ``data``."""
    return run(
        *(
            cell(lib, "fgsm", range(10), n=N, library=lib, summary={"data_sha256": sha})
            for lib, sha in zip(("art", "foolbox", "cleverhans"), data, strict=True)
        )
    )


def test_cells_on_the_same_samples_are_not_pooled_as_independent_evidence() -> None:
    entry: dict[str, Any] = {
        "metric": "success_rate",
        "where": {"attack": "fgsm"},
        "value": 0.25,
        "tolerance": 0.0,
    }
    row = _check(*_libraries(("d", "d", "d")), **entry)
    low, high = (float(v) for v in wilson_interval(10, N))
    # three libraries on the same 40 images are 40 samples (120 outcomes), not 120
    assert row["verdict"] == "PASS" and (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))
    assert "n=40, 3 cells, 120 outcomes pooled" in row["measured"]
    # on three different data sets they are 120 independent samples: a narrower interval
    row = _check(*_libraries(("d1", "d2", "d3")), **entry)
    low3, high3 = (float(v) for v in wilson_interval(30, 3 * N))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low3, high3))
    assert high3 - low3 < high - low and "n=120, 3 cells)" in row["measured"]


def test_the_two_proportion_test_between_pooled_sides_counts_distinct_samples() -> None:
    weak = [cell(f"w{lib}", "fgsm", range(10), n=N, library=lib) for lib in ("art", "foolbox")]
    strong = [cell(f"s{lib}", "pgd", range(18), n=N, library=lib) for lib in ("art", "foolbox")]
    summary, records = run(*weak, *strong)
    row = _check(
        summary, records, metric="success_rate", where={"attack": "pgd"}, greater_than={"attack": "fgsm"}
    )
    # 18/40 vs 10/40 once: p about 0.06; counting every library's cell as new samples would
    # have doubled n and claimed p < 0.01
    assert row["verdict"] == "PASS" and row["test"] and 0.01 < row["p_value"] < 0.2


def _attacks(model: str = "m") -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """On ``model``, FGSM breaks samples 0-9, PGD 5-19, C&W 15-24 (robust accuracy 0.75,
    0.625, 0.75; the worst case over all three breaks 0-24: 0.375)."""
    return [
        cell(f"f{model}", "fgsm", range(10), n=N, model=model),
        cell(f"p{model}", "pgd", range(5, 20), n=N, model=model),
        cell(f"c{model}", "cw", range(15, 25), n=N, model=model),
    ]


def test_the_worst_case_over_the_selected_cells_is_one_side() -> None:
    summary, records = run(*_attacks())
    order = [{"attack": "pgd"}, {"worst_case": True}]
    row = _check(summary, records, metric="robust_accuracy", order=order, direction="decreasing")
    assert row["verdict"] == "PASS" and "0.625 > 0.375" in row["measured"]
    assert row["test"] == "mcnemar" and row["p_value"] < 0.01  # 10 samples only the others break
    row = _check(
        summary, records, metric="robust_accuracy", where={"worst_case": True}, value=0.375, tolerance=0.0
    )
    assert row["verdict"] == "PASS" and "worst case over 3 cells" in row["measured"]
    # the worst case of a single attack is that attack
    row = _check(
        summary,
        records,
        metric="success_rate",
        where={"attack": "cw", "worst_case": True},
        value=0.25,
        tolerance=0.0,
    )
    assert row["verdict"] == "PASS"


def test_a_worst_case_over_several_models_is_not_measured() -> None:
    a = cell("a", "fgsm", range(10), n=N, model="m1", misclassified=[30])
    b = cell("b", "fgsm", range(10), n=N, model="m2", misclassified=[31])
    summary, records = run(a, b)
    row = _check(
        summary, records, metric="robust_accuracy", where={"worst_case": True}, value=0.5, tolerance=0.0
    )
    assert row["verdict"] == "NOT RUN" and "disagree on which samples" in row["evidence"]


@pytest.mark.parametrize(
    ("entry", "line"),
    [
        (
            {"metric": "mean_l2", "where": {"worst_case": True}, "value": 1.0, "tolerance": 0.1},
            "expect[0]: worst_case measures rates",
        ),
        (
            {"metric": "robust_accuracy", "where": {"worst_case": False}, "value": 1.0, "tolerance": 0.1},
            "expect[0].where: worst_case: must be true",
        ),
    ],
)
def test_a_bad_worst_case_is_one_located_line(entry: dict[str, Any], line: str) -> None:
    errors = errors_of(exp_dict(expect=[{"source": "s", **entry}]))
    assert len(errors) == 1 and errors[0].startswith(line), errors


def _min_norm(
    key: str, library: str, dist: np.ndarray, model: str = "m"
) -> tuple[dict[str, Any], pd.DataFrame]:
    broken = [i for i in range(N) if np.isfinite(dist[i])]
    d = np.where(np.isfinite(dist), dist, 0.0)
    return cell(key, "fmn", broken, n=N, library=library, model=model, kind="minimal", norm="l2", dist=d)


def test_local_optimality_ranks_implementations_against_the_empirical_best() -> None:
    best = np.linspace(0.5, 2.0, N)
    worse = best * 1.5
    worse[-5:] = np.inf  # and five samples not broken at all
    summary, records = run(
        _min_norm("a", "art", best),
        _min_norm("b", "foolbox", best.copy()),
        _min_norm("c", "cleverhans", worse),
    )
    entry = {"metric": "local_optimality", "where": {"library": "art"}, "value": 1.0, "tolerance": 1e-9}
    assert _check(summary, records, **entry)["verdict"] == "PASS"  # art is the best on every sample
    row = _check(
        summary,
        records,
        metric="local_optimality",
        where={"library": "art"},
        greater_than={"library": "cleverhans"},
    )
    assert row["verdict"] == "PASS" and 0 < row["measured_value"] - row["difference"] < 0.9
    assert row["test"] == "wilcoxon" and row["p_value"] < 1e-3
    row = _check(
        summary,
        records,
        metric="local_optimality",
        where={"attack": "fmn"},
        equal_across="library",
        tolerance=0.01,
    )
    assert row["verdict"] == "DIFFERS" and "art 1, foolbox 1, cleverhans 0." in row["measured"]


def test_local_optimality_averages_per_model_then_over_models() -> None:
    best = np.linspace(0.5, 2.0, N)
    cells = [
        _min_norm("a1", "art", best, "m1"),
        _min_norm("b1", "foolbox", best * 1.2, "m1"),
        _min_norm("a2", "art", best, "m2"),
        _min_norm("b2", "foolbox", best, "m2"),
    ]
    summary, records = run(*cells)
    one = _check(
        summary,
        records,
        metric="local_optimality",
        where={"library": "foolbox", "model": "m1"},
        value=0.0,
        tolerance=1.0,
    )
    both = _check(
        summary, records, metric="local_optimality", where={"library": "foolbox"}, value=0.0, tolerance=1.0
    )
    assert 0 < one["measured_value"] < 1
    assert both["measured_value"] == pytest.approx((one["measured_value"] + 1.0) / 2)


def test_local_optimality_of_a_fixed_budget_cell_is_not_run_with_the_reason() -> None:
    summary, records = run(cell("f", "fgsm", range(10), n=N), _min_norm("a", "art", np.linspace(0.5, 2.0, N)))
    row = _check(
        summary, records, metric="local_optimality", where={"attack": "fgsm"}, value=1.0, tolerance=0.1
    )
    assert row["verdict"] == "NOT RUN" and "fixed-budget cell without an eps search" in row["evidence"]
