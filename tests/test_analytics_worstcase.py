"""Per-sample worst case over libraries and attacks, complementarity and gain, on
hand-built records whose answers are counted by hand in each test."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from analytics_helpers import cell_records, summary_row

from advharness.analytics import (
    best_implementation,
    complementarity,
    ensemble_robust_accuracy,
    pairwise_complementarity,
    worst_case_samples,
)

CORRECT = [True, True, True, True, True, False]
#: PGD at eps 0.1 on 6 samples (5 correct): ART breaks 0 and 2, Foolbox 0 and 1.
ART = [True, False, True, False, False, False]
FOOLBOX = [True, True, False, False, False, False]
PGD: dict[str, Any] = dict(attack="pgd", kind="fixed", norm="linf", eps=0.1, dist=[0.1] * 6, correct=CORRECT)


def _pgd() -> pd.DataFrame:
    return pd.concat(
        [
            cell_records("a", cell=0, library="art", success=ART, **PGD),
            cell_records("f", cell=1, library="foolbox", success=FOOLBOX, **PGD),
        ],
        ignore_index=True,
    )


def test_best_implementation_breaks_a_sample_if_any_library_did() -> None:
    """Broken by some library: 0, 1, 2 -> robust: 3 and 4 -> 2/6. Each library alone leaves
    3/6 robust: the worst case is 1/6 lower."""
    out = best_implementation(_pgd())
    assert len(out) == 1
    row = out.iloc[0]
    assert row["robust_accuracy"] == pytest.approx(2 / 6)
    assert row["best_member_robust_accuracy"] == pytest.approx(3 / 6)
    assert row["gain"] == pytest.approx(1 / 6)
    assert row["n_members"] == 2 and row["members"] == "art;foolbox"
    assert row["ci_low"] < 2 / 6 < row["ci_high"]
    samples = worst_case_samples(_pgd())
    assert samples["broken"].tolist() == [True, True, True, False, False, False]
    assert samples["n_broken_by"].tolist() == [2, 1, 1, 0, 0, 0]
    assert samples["robust"].tolist() == [False, False, False, True, True, False]


def test_ensemble_over_attacks_is_the_mean_of_the_per_sample_minimum() -> None:
    """An FGSM run breaking only sample 3 joins the PGD runs at eps 0.1: robust only 4 ->
    1/6; another eps and another model stay apart."""
    fgsm = cell_records(
        "g", cell=2, attack="fgsm", kind="fixed", norm="linf", eps=0.1, correct=CORRECT,
        success=[False, False, False, True, False, False], dist=[0.1] * 6,
    )  # fmt: skip
    other_eps = cell_records("h", cell=3, success=[True] * 6, **{**PGD, "eps": 0.3})
    other_model = cell_records("i", cell=4, model="m2", success=[False] * 6, **PGD)
    recs = pd.concat([_pgd(), fgsm, other_eps, other_model], ignore_index=True)
    out = ensemble_robust_accuracy(recs).set_index(["model", "eps"])
    assert out.loc[("m", 0.1), "robust_accuracy"] == pytest.approx(1 / 6)
    assert out.loc[("m", 0.1), "n_members"] == 3
    assert out.loc[("m", 0.1), "best_member_robust_accuracy"] == pytest.approx(3 / 6)
    assert out.loc[("m", 0.3), "robust_accuracy"] == pytest.approx(0.0)
    assert out.loc[("m2", 0.1), "robust_accuracy"] == pytest.approx(5 / 6)


def test_settings_from_the_summary_keep_grid_cells_apart() -> None:
    """Two ART PGD cells that differ only in steps: one group without the summary, two
    with it."""
    a = cell_records("a", cell=0, library="art", success=ART, **PGD)
    b = cell_records("b", cell=1, library="art", success=FOOLBOX, **PGD)
    recs = pd.concat([a, b], ignore_index=True)
    assert len(best_implementation(recs)) == 1
    summary = pd.DataFrame(
        [summary_row(cell=0, cell_key="a", steps=10), summary_row(cell=1, cell_key="b", steps=20)]
    )
    split = best_implementation(recs, summary)
    assert sorted(split["steps"]) == [10, 20]
    assert split["robust_accuracy"].tolist() == pytest.approx([3 / 6, 3 / 6])


def test_runs_that_disagree_on_the_clean_predictions_are_refused() -> None:
    wrong = cell_records("x", cell=1, library="foolbox", success=FOOLBOX, **{**PGD, "correct": [True] * 6})
    recs = pd.concat([cell_records("a", library="art", success=ART, **PGD), wrong], ignore_index=True)
    with pytest.raises(ValueError, match="same model and data"):
        best_implementation(recs)


def test_complementarity_and_gain_by_hand() -> None:
    """Of the 5 correct samples: both break 0, only ART 2, only Foolbox 1, neither 3 and 4.
    Complementarity = (1 + 1) / (1 + 1 + 2) = 0.5; adding Foolbox to ART removes sample 1
    from the robust ones: a gain of 1/6."""
    res = complementarity(ART, FOOLBOX, CORRECT)
    assert (res["both"], res["only_a"], res["only_b"], res["neither"]) == (1, 1, 1, 2)
    assert res["complementarity"] == pytest.approx(0.5)
    assert res["gain_of_b"] == pytest.approx(1 / 6) and res["gain_of_a"] == pytest.approx(1 / 6)
    same = complementarity(ART, ART, CORRECT)
    assert same["complementarity"] == 0.0 and same["gain_of_b"] == 0.0
    # nothing left to disagree on: every correct sample broken by both
    assert complementarity([True, True], [True, True])["complementarity"] == 0.0


def test_pairwise_complementarity_table() -> None:
    out = pairwise_complementarity(_pgd())
    assert len(out) == 1
    row = out.iloc[0]
    assert (row["library_a"], row["library_b"]) == ("art", "foolbox")
    assert (row["only_a"], row["only_b"], row["both"]) == (1, 1, 1)
    assert row["robust_accuracy_a"] == pytest.approx(3 / 6)
    assert row["robust_accuracy_b"] == pytest.approx(3 / 6)
    assert row["robust_accuracy_both"] == pytest.approx(2 / 6)
