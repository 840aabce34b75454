"""The sanity checks that compare attacks (single step vs iterative, eps monotonicity and
guessing, minimum-norm failures and dominance, weaker access vs white-box) on hand-built
runs: each fires on a bad evaluation and stays quiet on a good one."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from checks_helpers import cell, run

from advharness.analytics import CHECKS, sanity_checks
from advharness.analytics.checks import COLUMNS

R = range


def flags(summary: pd.DataFrame, records: pd.DataFrame | None, *names: str, **kwargs: Any) -> pd.DataFrame:
    out = sanity_checks(summary, records, checks=names or None, **kwargs)
    assert list(out.columns) == list(COLUMNS)
    return out


def test_single_step_breaking_samples_the_iterative_attack_missed() -> None:
    s, r = run(cell("f", "fgsm", [0, 1, 2, 5]), cell("p", "pgd", [0, 1, 3, 4]))
    out = flags(s, r, "single_step_beats_iterative_samples")
    assert len(out) == 1
    row = out.iloc[0]
    assert row["cell_keys"] == ("p",) and row["reference_keys"] == ("f",)  # the PGD is too weak
    assert row["samples"] == (2, 5) and row["value"] == 2
    assert row["severity"] == "warning" and row["eps"] == 0.1 and row["model"] == "m"
    assert "fgsm (art) broke 2 of 40 samples that pgd (art) did not" in row["message"]
    assert row["rule"] == CHECKS[row["check"]].rule and "Carlini" in row["source"]
    # the aggregate rates (4 vs 4 of 40) are the same: no rate flag
    assert flags(s, r, "single_step_beats_iterative_rate").empty
    # a good PGD breaks every sample FGSM broke; another eps, model or norm is not compared
    good = run(
        cell("f", "fgsm", [0, 1, 2, 5]),
        cell("p", "pgd", [0, 1, 2, 3, 5]),
        cell("p2", "pgd", [], eps=0.2),
        cell("p3", "pgd", [], model="other"),
        cell("b", "bim", [], norm="l2"),
    )
    assert flags(*good).empty


def test_single_step_success_rate_above_the_iterative_one() -> None:
    s, r = run(cell("f", "fgsm", R(30)), cell("p", "pgd", R(5)), cell("m", "mim", R(28)))
    out = flags(s, r, "single_step_beats_iterative_rate")
    assert out["cell_keys"].tolist() == [("p",)]  # 30 vs 28 of 40: not told apart
    assert out["reference_keys"].tolist() == [("f",)]
    assert out.iloc[0]["severity"] == "error" and out.iloc[0]["value"] == pytest.approx(25 / 40)
    assert "p=" in out.iloc[0]["message"]
    # misclassified samples are neither broken nor compared
    s, r = run(cell("f", "fgm", R(5), norm="l2", eps=1.0), cell("p", "pgd", R(5), norm="l2", eps=1.0))
    assert flags(s, r).empty


def test_robust_accuracy_rising_with_eps() -> None:
    pts = [(0.1, R(20)), (0.2, R(36)), (0.3, R(10))]  # 0.3 breaks far fewer than 0.2
    s, r = run(*(cell(f"p{e}", "pgd", b, eps=e) for e, b in pts))
    out = flags(s, r, "success_not_monotone_in_eps")
    assert len(out) == 1
    row = out.iloc[0]
    assert row["cell_keys"] == ("p0.3",) and row["reference_keys"] == ("p0.2",) and row["eps"] == 0.3
    assert (
        row["value"] == pytest.approx((30 - 4) / 40) and "rises from 10% at eps=0.2 to 75%" in row["message"]
    )
    # a wiggle within noise (36 then 34 of 40) is quiet, and so are two libraries apart
    wiggle = [(0.1, R(20), "art"), (0.2, R(36), "art"), (0.3, R(34), "art"), (0.3, R(38), "foolbox")]
    s, r = run(*(cell(f"{lib}{e}", "pgd", b, eps=e, library=lib) for e, b, lib in wiggle))
    assert flags(s, r, "success_not_monotone_in_eps").empty


def test_accuracy_above_guessing_at_a_large_eps() -> None:
    # labels cycle over 10 classes: guessing gets 10 %, +0.1 tolerance
    s, r = run(cell("a", "pgd", R(10), eps=0.2), cell("b", "pgd", R(12), eps=0.5))
    out = flags(s, r, "accuracy_above_chance_at_large_eps")
    assert out["cell_keys"].tolist() == [("b",)] and out.iloc[0]["value"] == pytest.approx(0.7)
    assert "K=10" in out.iloc[0]["message"] and out.iloc[0]["severity"] == "error"
    # 32 of 40 broken leaves 20 %, within the tolerance; 0.3 is not large in [0, 1]
    assert flags(*run(cell("b", "pgd", R(32), eps=0.5)), "accuracy_above_chance_at_large_eps").empty
    assert flags(*run(cell("b", "pgd", R(12), eps=0.3)), "accuracy_above_chance_at_large_eps").empty
    # a black-box attack may stop at its budget
    square = cell("s", "square", R(12), eps=0.5, threat_model="score-based")
    assert flags(*run(square), "accuracy_above_chance_at_large_eps").empty
    # half the range of [0, 255] inputs is 127.5
    big = cell("b", "pgd", R(12), eps=100.0, summary={"bounds_high": 255.0})
    assert flags(*run(big), "accuracy_above_chance_at_large_eps").empty
    # L2 is large only when the caller says so; nb_classes overrides the labels
    l2 = cell("c", "pgd", R(12), norm="l2", eps=5.0, summary={"nb_classes": 4})
    assert flags(*run(l2), "accuracy_above_chance_at_large_eps").empty
    out = flags(*run(l2), "accuracy_above_chance_at_large_eps", large_eps={"l2": 4.0})
    assert len(out) == 1 and "K=4" in out.iloc[0]["message"]


def test_minimum_norm_attack_below_100_percent() -> None:
    cw = cell("cw", "cw", R(1, 40), kind="minimal", norm="l2", eps=np.nan, misclassified=[39])
    s, r = run(cw)
    out = flags(s, r, "minimum_norm_below_100")
    assert len(out) == 1 and out.iloc[0]["samples"] == (0,)
    assert out.iloc[0]["value"] == pytest.approx(38 / 39) and "I6" in out.iloc[0]["source"]
    # every correct sample broken; a bounded (jsma) or black-box minimum-norm attack may fail
    good = run(
        cell("df", "deepfool", R(39), kind="minimal", norm="l2", eps=np.nan, misclassified=[39]),
        cell("j", "jsma", R(5), kind="minimal", norm="l0", eps=np.nan),
        cell("h", "hsj", R(5), kind="minimal", norm="l2", eps=np.nan, threat_model="decision-based"),
    )
    assert flags(*good, "minimum_norm_below_100").empty


def _minimal(key: str, attack: str, dist: list[float], **kw: Any) -> tuple[dict[str, Any], pd.DataFrame]:
    d = np.asarray(dist)
    return cell(key, attack, np.flatnonzero(np.isfinite(d)), n=len(d), kind="minimal", norm="l2", eps=np.nan,
                dist=np.where(np.isfinite(d), d, 0.0), **kw)  # fmt: skip


def test_a_dominated_minimum_norm_attack() -> None:
    df = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1]
    cw = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, np.inf, np.inf]
    s, r = run(_minimal("df", "deepfool", df), _minimal("cw", "cw", cw))
    out = flags(s, r, "minimum_norm_dominated")
    assert out["cell_keys"].tolist() == [("cw",)] and out["reference_keys"].tolist() == [("df",)]
    # clipped at R = 1.1 (deepfool's largest): areas 0.89 and 0.65, no attack 1.1
    assert out.iloc[0]["value"] == pytest.approx(1 - (0.89 - 0.65) / (1.1 - 0.65))
    assert "dominated by deepfool" in out.iloc[0]["message"]
    # crossing curves, or one sample apart, are not dominated
    crossing = [0.1, 0.2, 0.3, 0.4, 0.5, 2.0, 2.0, 2.0, 2.0, 2.0]
    close = [*df[:-1], 1.5]
    for other in (crossing, close):
        assert flags(
            *run(_minimal("df", "deepfool", df), _minimal("x", "fmn", other)), "minimum_norm_dominated"
        ).empty
    # a black-box attack dominated by a white-box one is expected
    hsj = _minimal("h", "hsj", cw, threat_model="decision-based")
    assert flags(*run(_minimal("df", "deepfool", df), hsj), "minimum_norm_dominated").empty


def test_weaker_access_or_noise_breaking_samples_no_white_box_attack_broke() -> None:
    s, r = run(
        cell("p", "pgd", R(10)),
        cell("f", "fgsm", [10, 11]),
        cell("sq", "square", [0, 1, 12, 13], threat_model="score-based"),
        cell("nz", "noise", [14]),  # the noise baseline, whatever its threat model
        cell("tr", "pgd", [0, 1, 10, 11], threat_model="transfer"),
    )
    out = flags(s, r, "weaker_access_beats_white_box_samples")
    # the transfer cell's samples were all broken by some white-box cell
    assert out["cell_keys"].tolist() == [("sq",), ("nz",)]
    assert out["samples"].tolist() == [(12, 13), (14,)]
    assert out["reference_keys"].tolist() == [("p", "f")] * 2
    assert "no white-box attack broke" in out["message"].iloc[0]
    # rates: square 4/40 and pgd 10/40: no rate flag; noise alone at another eps: no reference
    assert flags(s, r, "weaker_access_beats_white_box_rate").empty
    assert flags(*run(cell("p", "pgd", R(3)), cell("nz", "noise", R(9), eps=0.2))).empty


def test_weaker_access_success_rate_above_every_white_box_cell() -> None:
    s, r = run(
        cell("p", "pgd", R(10)),
        cell("f", "fgsm", R(8)),
        cell("sq", "square", R(12), threat_model="score-based"),
    )
    out = flags(s, r, "weaker_access_beats_white_box_rate")
    assert len(out) == 1 and out.iloc[0]["cell_keys"] == ("sq",)
    assert out.iloc[0]["reference_keys"] == ("p", "f")
    assert out.iloc[0]["value"] == pytest.approx(2 / 40) and "AutoAttack" in out.iloc[0]["source"]
    assert "best white-box pgd (art) 25%" in out.iloc[0]["message"]


def test_a_sound_evaluation_raises_no_flag() -> None:
    df = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1] * 4
    s, r = run(
        cell("f1", "fgsm", R(10), eps=0.1),
        cell("p1", "pgd", R(14), eps=0.1),
        cell("f2", "fgsm", R(30), eps=0.3),
        cell("p2", "pgd", R(38), eps=0.3),
        cell("p5", "pgd", R(40), eps=0.5),
        cell("f5", "fgsm", R(40), eps=0.5),
        cell("foolbox-p1", "pgd", R(14), eps=0.1, library="foolbox"),
        cell("sq", "square", R(12), eps=0.1, threat_model="score-based"),
        _minimal("df", "deepfool", df),
        _minimal("df-fb", "deepfool", [d * 1.01 for d in df], library="foolbox"),
    )
    assert len(s) == 10
    assert sanity_checks(s, r).empty


def test_only_ok_cells_are_checked_and_missing_columns_report_nothing() -> None:
    bad = run(cell("f", "fgsm", R(30)), cell("p", "pgd", R(5)))
    s, r = bad
    assert set(flags(s, r)["check"]) == {
        "single_step_beats_iterative_samples",
        "single_step_beats_iterative_rate",
    }
    assert flags(s.assign(status=["ok", "error"]), r).empty
    assert flags(s, r.iloc[0:0]).empty  # per-sample checks need records
    assert flags(s, None, "single_step_beats_iterative_samples").empty
    assert flags(s.iloc[0:0], r).empty
    with pytest.raises(ValueError, match="unknown checks"):
        sanity_checks(s, r, checks=["nope"])
