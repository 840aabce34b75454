"""``advharness compare --metric``: two runs compared on a rate other than the success rate,
on a distance of minimum-norm cells and on a cost, each on hand-built runs with known
differences (the test that fits, paired or not); then the CLI on two tiny real runs."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from checks_helpers import cell, run
from conftest import small_experiment

from advharness.analytics.compare import compare_results
from advharness.cli import main
from advharness.core.errors import HarnessError
from advharness.reporting.compare import compare_command, differences_text

N = 40


def _cw(key: str, d: float, time_s: float) -> tuple[dict[str, Any], pd.DataFrame]:
    """C&W L2 breaking samples 0-29, each at distance ``d``."""
    dist = [d if i < 30 else 0.0 for i in range(N)]
    summary = {"median_l2": d, "mean_l2": d, "median_norm": d, "time_s": time_s}
    return cell(key, "cw", range(30), n=N, kind="minimal", norm="l2", dist=dist, summary=summary)


def _runs() -> tuple[tuple[pd.DataFrame, pd.DataFrame], tuple[pd.DataFrame, pd.DataFrame]]:
    """B: FGSM breaks 20 more samples (robust accuracy 0.75 -> 0.25), PGD sees half the samples
    misclassified (clean accuracy 1 -> 0.5), C&W's distances 0.6 -> 0.4, C&W 3x slower."""
    a = run(
        cell("f", "fgsm", range(10), n=N),
        cell("p", "pgd", range(5), n=N),
        _cw("c", 0.6, time_s=1.0),
    )
    b = run(
        cell("f2", "fgsm", range(30), n=N),
        cell("p2", "pgd", range(5), n=N, misclassified=range(20, 40)),
        _cw("c2", 0.4, time_s=3.0),
    )
    return a, b


def _shared(table: pd.DataFrame) -> pd.DataFrame:
    both: pd.DataFrame = table[table["in"] == "both"].set_index("attack")
    return both


def test_a_rate_other_than_the_success_rate_gets_its_difference_and_mcnemar() -> None:
    a, b = _runs()
    table = _shared(compare_results(*a, *b, metric="robust_accuracy"))
    fgsm = table.loc["fgsm"]
    assert fgsm["robust_accuracy_a"] == pytest.approx(0.75) and fgsm["robust_accuracy_b"] == pytest.approx(
        0.25
    )
    assert fgsm["difference"] == pytest.approx(-0.5) and fgsm["paired"] and fgsm["test"] == "mcnemar"
    assert fgsm["p_value"] < 1e-3 and fgsm["differs"]
    assert fgsm["robust_accuracy_a_ci_low"] < 0.75 < fgsm["robust_accuracy_a_ci_high"]
    clean = _shared(compare_results(*a, *b, metric="clean_accuracy")).loc["pgd"]
    assert clean["difference"] == pytest.approx(-0.5) and clean["test"] == "mcnemar"
    assert clean["p_value"] < 1e-3 and clean["differs"]
    # the same clean accuracy: no difference, McNemar finds none
    same = _shared(compare_results(*a, *b, metric="clean_accuracy")).loc["fgsm"]
    assert same["difference"] == 0 and same["p_value"] == 1.0 and not same["differs"]
    # other samples: the two-proportion test
    other = compare_results(*a, b[0].assign(data_sha256="e"), b[1], metric="robust_accuracy")
    unpaired = _shared(other).loc["fgsm"]
    assert not unpaired["paired"] and unpaired["test"] in ("z", "fisher") and unpaired["p_value"] < 1e-3


def test_a_distance_gets_the_wilcoxon_test_when_paired_and_none_otherwise() -> None:
    a, b = _runs()
    for metric in ("median_l2", "mean_l2", "median_norm"):
        cw = _shared(compare_results(*a, *b, metric=metric)).loc["cw"]
        assert cw[f"{metric}_a"] == pytest.approx(0.6) and cw["difference"] == pytest.approx(-0.2)
        assert cw["test"] == "wilcoxon" and cw["paired"] and cw["p_value"] < 1e-3 and cw["differs"]
    unpaired = _shared(compare_results(*a, b[0].assign(data_sha256="e"), b[1], metric="median_l2"))
    assert unpaired.loc["cw", "difference"] == pytest.approx(-0.2)
    assert unpaired.loc["cw", "test"] == "" and not unpaired.loc["cw", "differs"]
    text = differences_text(
        compare_results(*a, b[0].assign(data_sha256="e"), b[1], metric="median_l2"), "A", "B", "median_l2"
    )
    assert "median_l2 A" in text and "none (not paired)" in text and "-0.2" in text
    assert "Wilcoxon signed-rank" in text


def test_a_cost_gets_its_difference_and_no_test() -> None:
    a, b = _runs()
    table = compare_results(*a, *b, metric="time_s")
    cw = _shared(table).loc["cw"]
    assert cw["difference"] == pytest.approx(2.0) and cw["test"] == "" and not cw["differs"]
    text = differences_text(table, "A", "B", "time_s")
    assert "time_s A" in text and "+2" in text and "none (a cost)" in text
    assert "time_s is a cost, one number per cell: no test" in text


def test_the_default_is_the_success_rate_as_before() -> None:
    a, b = _runs()
    default, explicit = compare_results(*a, *b), compare_results(*a, *b, metric="success_rate")
    pd.testing.assert_frame_equal(default, explicit)
    fgsm = _shared(default).loc["fgsm"]
    assert fgsm["difference"] == pytest.approx(0.5) and fgsm["test"] == "mcnemar"
    assert differences_text(default, "A", "B") == differences_text(explicit, "A", "B", "success_rate")


def test_a_bad_metric_is_one_line() -> None:
    a, b = _runs()
    with pytest.raises(HarnessError, match="compare: unknown metric 'robust_acc'; known: success_rate"):
        compare_results(*a, *b, metric="robust_acc")
    with pytest.raises(
        HarnessError, match="compare: local_optimality is relative to one run's empirical best"
    ):
        compare_results(*a, *b, metric="local_optimality")
    with pytest.raises(HarnessError, match="--metric is for two runs"):
        compare_command("a", None, "", "robust_accuracy")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """FGSM and DeepFool (L2) on 12 digits, then on 20: the same settings on other samples."""
    tmp = tmp_path_factory.mktemp("compare-metric")
    path = small_experiment(
        tmp / "exp.yaml",
        data={"dataset": "digits", "n_samples": 12},
        libraries=["art"],
        attacks=[{"attack": "fgsm", "eps": 0.1}, {"attack": "deepfool", "norm": "l2"}],
    )
    common = ["--backend", "inline", "--no-progress"]
    assert main(["run", str(path), *common, "--out", str(tmp / "a")]) == 0
    assert main(["run", str(path), *common, "--out", str(tmp / "b"), "data.n_samples=20"]) == 0
    return str(tmp / "a"), str(tmp / "b")


def test_the_cli_compares_on_the_metric_asked(
    two_runs: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_runs
    capsys.readouterr()
    assert main(["compare", a, b, "--metric", "robust_accuracy"]) == 0
    out = capsys.readouterr().out
    assert "robust_accuracy A [95%]" in out and "2 cell settings in both runs" in out
    assert " z p=" in out or " fisher p=" in out  # other samples: unpaired
    assert main(["compare", a, a, "--metric", "median_norm"]) == 0  # the same samples: paired
    out = capsys.readouterr().out
    assert "median_norm A" in out and "wilcoxon p=1" in out
    assert main(["compare", a, b, "--metric", "median_norm"]) == 0
    assert "none (not paired)" in capsys.readouterr().out
    assert main(["compare", a, b, "--metric", "time_s"]) == 0
    assert "none (a cost)" in capsys.readouterr().out
    assert main(["compare", a, b, "--metric", "robust_acc"]) == 2
    assert "unknown metric 'robust_acc'" in capsys.readouterr().err
    assert main(["compare", a, "--expect", "--metric", "time_s"]) == 2
    assert "--metric is for two runs" in capsys.readouterr().err


def test_the_default_output_has_not_changed(
    two_runs: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_runs
    capsys.readouterr()
    assert main(["compare", a, b]) == 0
    default = capsys.readouterr().out
    assert main(["compare", a, b, "--metric", "success_rate"]) == 0
    assert capsys.readouterr().out == default
    assert "success A [95%]" in default and "McNemar on paired samples" in default
