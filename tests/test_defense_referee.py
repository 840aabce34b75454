"""Judging defended models: randomized models evaluated k times, detectors, the per-sample
worst case over non-adaptive, adaptive, black-box and transfer attacks, and the
before/after table."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from advharness.analytics.defenses import category, defense_worst_case
from advharness.judging.referee import judge, summarize, worst_of_evaluations
from advharness.models.detector import threshold_for
from advharness.reporting.harden import before_after


def test_worst_of_evaluations_takes_any_evaluation_that_errs() -> None:
    y = np.array([0, 1, 2, 3])
    preds = np.array([[0, 1, 2, 3], [0, 5, 2, 3], [0, 1, 7, 3]])  # sample 1 and 2 err once each
    assert worst_of_evaluations(preds, y).tolist() == [0, 5, 7, 3]
    targets = np.array([4, 1, 9, 3])  # targeted: the first evaluation that hits the target
    assert worst_of_evaluations(preds, y, targets).tolist() == [0, 1, 2, 3]
    assert worst_of_evaluations(np.array([[4, 0]]), y[:2], targets[:2]).tolist() == [4, 0]


def test_a_flagged_adversarial_is_no_success() -> None:
    x = np.zeros((4, 3), np.float32)
    x_adv = x + 0.05
    y = np.zeros(4, int)
    common: dict[str, Any] = dict(
        x=x, y=y, x_adv=x_adv, clean_pred=y, adv_pred=np.array([1, 1, 1, 0]), bounds=(0.0, 1.0)
    )
    detected = np.array([True, False, False, True])
    r = judge(**common, norm="linf", eps=0.1, enforce_eps=True, detected=detected).records
    assert r["fooled"].tolist() == [True, True, True, False]
    assert r["success"].tolist() == [False, True, True, False]
    s = summarize(r.assign(clean_detected=[False, False, True, False]), "linf")
    # detection rate among the inputs that fool the classifier validly: 1 of 3
    assert s["n_detected"] == 1 and s["detection_rate"] == pytest.approx(1 / 3)
    assert s["false_positive_rate"] == pytest.approx(0.25)
    plain = judge(**common, norm="linf", eps=0.1, enforce_eps=True).records
    assert "detected" not in plain and "detection_rate" not in summarize(plain, "linf")


@pytest.mark.parametrize("fpr", [0.01, 0.05, 0.2, 0.5])
def test_the_threshold_flags_at_most_the_chosen_false_positive_rate(fpr: float) -> None:
    scores = np.random.default_rng(0).gamma(2.0, size=997)
    t = threshold_for(scores, fpr)
    assert (scores > t).mean() <= fpr
    assert (scores >= t).mean() > fpr - 1 / len(scores)  # and no higher than it needs to be


def _cell(
    cell: int, model: str, defended: str, threat: str, adaptive: str, success: list[bool]
) -> dict[str, Any]:
    return {
        "cell": cell,
        "cell_key": f"k{cell}",
        "model": model,
        "defended_model": defended,
        "adaptive": adaptive,
        "threat_model": threat,
        "attack": "pgd" if threat == "white-box" else "square",
        "library": "art",
        "framework": "torch",
        "kind": "fixed",
        "norm": "linf",
        "eps": 0.1,
        "targeted": False,
        "run_seed": 0,
        "status": "ok",
        "reason": "",
        "family": model,
        "source_model": "m" if threat == "transfer" else None,
        "success": success,
    }


def _frames(cells: list[dict[str, Any]], correct: list[bool]) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, recs = [], []
    for c in cells:
        success = np.array(c.pop("success")) & np.array(correct)
        n_correct = sum(correct)
        rows.append(
            {
                **c,
                "success_rate": success.sum() / n_correct,
                "success_rate_at_eps": success.sum() / n_correct,
                "clean_accuracy": n_correct / len(correct),
            }
        )
        for i, (ok, s) in enumerate(zip(correct, success, strict=True)):
            recs.append(
                {k: c[k] for k in ("cell", "cell_key", "model", "attack", "kind", "norm", "eps", "targeted")}
                | {"library": c["library"], "threat_model": c["threat_model"], "run_seed": 0, "sample": i}
                | {"correct": ok, "success": s, "success_at_eps": s}
            )
    return pd.DataFrame(rows), pd.DataFrame(recs)


def test_the_worst_case_pools_every_category_per_sample() -> None:
    d = "m+jpeg"
    correct = [True, True, True, True, False]
    summary, records = _frames(
        [
            _cell(0, "m", "m", "white-box", "", [True, True, True, False, True]),
            _cell(1, d, d, "white-box", "", [False, False, False, False, True]),  # masked
            _cell(2, f"{d}@bpda", d, "white-box", "bpda", [True, True, False, False, False]),
            _cell(3, d, d, "score-based", "", [False, False, True, False, False]),
            _cell(4, d, d, "transfer", "", [False, True, False, False, False]),
        ],
        correct,
    )
    w: Any = defense_worst_case(summary, records).set_index("defended_model")
    assert w.loc[d, "n"] == 5 and w.loc[d, "n_correct"] == 4
    assert w.loc[d, "non-adaptive_success_rate"] == 0.0
    assert w.loc[d, "adaptive_success_rate"] == 0.5
    assert w.loc[d, "black-box_success_rate"] == 0.25 and w.loc[d, "transfer_success_rate"] == 0.25
    assert w.loc[d, "worst_case_success_rate"] == 0.75  # samples 0, 1, 2: no category alone
    assert w.loc[d, "worst_case_robust_accuracy"] == pytest.approx(1 / 5)
    assert w.loc[d, "worst_category"] == "adaptive"
    assert w.loc["m", "worst_case_success_rate"] == 0.75 and bool(
        np.isnan(float(w.at["m", "adaptive_success_rate"]))
    )
    table = before_after(summary, w.reset_index(), ["m", d], {}, {"m": None, d: "m"})
    assert table.loc["clean accuracy", d] == "80%"
    assert table.loc["clean-accuracy cost (points)", d] == "+0.0"
    assert table.loc["worst case over the pool (linf eps=0.1)", d] == "75%"
    assert table.loc["worst case, adaptive (linf eps=0.1)", d] == "50%"
    assert table.loc["worst case, adaptive (linf eps=0.1)", "m"] == ""
    assert any(label.endswith("[art] via bpda") for label in table.index)


def test_categories_follow_threat_model_and_surrogate() -> None:
    assert category(pd.Series({"threat_model": "white-box", "adaptive": ""})) == "non-adaptive"
    assert category(pd.Series({"threat_model": "white-box", "adaptive": "eot8"})) == "adaptive"
    assert category(pd.Series({"threat_model": "decision-based", "adaptive": ""})) == "black-box"
    assert category(pd.Series({"threat_model": "white-box", "attack": "noise"})) == "black-box"
    assert category(pd.Series({"threat_model": "transfer"})) == "transfer"


def test_a_defense_broken_only_adaptively_is_flagged_over_credited() -> None:
    from advharness.analytics import sanity_checks

    d = "m+jpeg"
    n = 40
    correct = [True] * n
    masked = [False] * n
    broken = [i < 30 for i in range(n)]
    summary, records = _frames(
        [
            _cell(1, d, d, "white-box", "", masked),
            _cell(2, f"{d}@bpda", d, "white-box", "bpda", broken),
        ],
        correct,
    )
    out = sanity_checks(summary, records, checks=["defense_over_credited"])
    assert out["check"].tolist() == ["defense_over_credited"] and list(out.iloc[0]["cell_keys"]) == ["k1"]
    assert "adaptive attacks break 75%" in out.iloc[0]["message"]
    # the adaptive attack no stronger: no flag
    summary, records = _frames(
        [_cell(1, d, d, "white-box", "", broken), _cell(2, f"{d}@bpda", d, "white-box", "bpda", broken)],
        correct,
    )
    assert sanity_checks(summary, records, checks=["defense_over_credited"]).empty


def test_detector_roc_separates_clean_from_fooling_inputs() -> None:
    from advharness.analytics import detector_roc

    n = 20
    rng = np.random.default_rng(0)
    clean = rng.uniform(0.0, 0.5, n)
    adv = rng.uniform(0.4, 1.0, n)
    fooled = np.arange(n) < 15  # only inputs that fool the classifier count as positives
    rec = pd.DataFrame(
        {
            "model": "m+det",
            "sample": np.arange(n),
            "clean_detector_score": clean,
            "detector_score": adv,
            "fooled": fooled,
            **{c: False for c in ("nonfinite", "box_violation", "eps_violation", "degenerate")},
        }
    )
    curve, area = detector_roc(pd.concat([rec, rec.assign(detector_score=adv + 1)]))
    row = area.iloc[0]
    assert (row["n_clean"], row["n_adversarial"]) == (n, 30)
    assert 0.9 < row["auc"] <= 1.0 and curve["fpr"].iloc[-1] == 1.0 and curve["tpr"].iloc[-1] == 1.0
    empty_curve, empty_area = detector_roc(rec.drop(columns=["detector_score"]))
    assert empty_curve.empty and empty_area.empty
