"""``expect:`` (published figures and findings) and ``advharness compare``: each kind of
expectation on hand-built results made to satisfy or violate it, the located errors of bad
entries, the comparison of two hand-built runs with known differences, and the CLI and
report paths on two tiny real runs."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from checks_helpers import cell, run
from conftest import errors_of, exp_dict

from advharness.analytics.compare import compare_results
from advharness.analytics.expectations import check_expectations
from advharness.cli import main
from advharness.reporting.compare import EXPECTATIONS_FILE, differences_text
from advharness.reporting.report import SECTIONS, ReportContext, write_report
from advharness.reporting.results import read_results
from advharness.reporting.run_result import RunResult

N = 40


def _check(summary: pd.DataFrame, records: pd.DataFrame, **entry: Any) -> pd.Series:
    table = check_expectations(summary, records, [{"source": "a paper, Table 1", **entry}])
    assert len(table) == 1
    row: pd.Series = table.iloc[0]
    return row


def _three_attacks() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Robust accuracy 0.75 (fgsm), 0.5 (pgd, 40 steps), 0.25 (pgd, 100 steps)."""
    return run(
        cell("f", "fgsm", range(10), n=N),
        cell("p40", "pgd", range(20), n=N, summary={"steps": 40}),
        cell("p100", "pgd", range(30), n=N, summary={"steps": 100}),
    )


def test_a_published_value_passes_within_tolerance_and_differs_outside() -> None:
    summary, records = _three_attacks()
    row = _check(
        summary, records, metric="robust_accuracy", where={"attack": "fgsm"}, value=0.74, tolerance=0.02
    )
    assert row["verdict"] == "PASS" and row["measured_value"] == pytest.approx(0.75)
    assert row["ci_low"] < 0.75 < row["ci_high"] and row["source"] == "a paper, Table 1"
    row = _check(
        summary, records, metric="robust_accuracy", where={"attack": "fgsm"}, value=0.34, tolerance=0.05
    )
    assert row["verdict"] == "DIFFERS" and row["difference"] == pytest.approx(0.41)
    assert "0.41 > tolerance 0.05" in row["evidence"] and "outside the 95% interval" in row["evidence"]
    # consistent with the interval, not with the point estimate: still DIFFERS, and said so
    row = _check(
        summary, records, metric="robust_accuracy", where={"attack": "fgsm"}, value=0.65, tolerance=0.02
    )
    assert row["verdict"] == "DIFFERS" and "inside the 95% interval" in row["evidence"]


def test_nothing_selected_is_not_run_with_the_reason() -> None:
    summary, records = _three_attacks()
    row = _check(summary, records, metric="success_rate", where={"attack": "cw"}, value=0.5, tolerance=0.1)
    assert row["verdict"] == "NOT RUN" and row["evidence"] == "no row matches attack=cw"
    summary.loc[summary["attack"] == "fgsm", "status"] = "error"
    row = _check(summary, records, metric="success_rate", where={"attack": "fgsm"}, value=0.5, tolerance=0.1)
    assert row["verdict"] == "NOT RUN" and "none ok (error 1)" in row["evidence"]


def test_equal_across_libraries_passes_when_identical_and_differs_with_the_test() -> None:
    same = run(cell("a", "fgsm", range(10), n=N), cell("b", "fgsm", range(10), n=N, library="foolbox"))
    row = _check(
        *same, metric="success_rate", where={"attack": "fgsm"}, equal_across="library", tolerance=0.0
    )
    assert row["verdict"] == "PASS" and row["test"] == "mcnemar" and row["p_value"] == 1.0
    apart = run(cell("a", "fgsm", range(10), n=N), cell("b", "fgsm", range(30), n=N, library="foolbox"))
    row = _check(
        *apart, metric="success_rate", where={"attack": "fgsm"}, equal_across="library", tolerance=0.05
    )
    assert row["verdict"] == "DIFFERS" and row["difference"] == pytest.approx(0.5)
    assert row["test"] == "mcnemar" and row["p_value"] < 1e-3 and "art vs foolbox" in row["evidence"]
    # without records the rates are compared unpaired
    row = check_expectations(
        apart[0],
        None,
        [{"metric": "success_rate", "equal_across": "library", "tolerance": 0.0, "source": "s"}],
    ).iloc[0]
    assert row["verdict"] == "DIFFERS" and row["test"] in ("z", "fisher") and row["p_value"] < 1e-3
    one = run(cell("a", "fgsm", range(10), n=N))
    row = _check(*one, metric="success_rate", equal_across="library", tolerance=0.0)
    assert row["verdict"] == "NOT RUN" and "one library only" in row["evidence"]


def test_an_ordering_passes_in_its_direction_and_differs_against_it() -> None:
    summary, records = _three_attacks()
    order = [{"attack": "fgsm"}, {"attack": "pgd", "steps": 40}, {"attack": "pgd", "steps": 100}]
    row = _check(summary, records, metric="robust_accuracy", order=order, direction="decreasing")
    assert row["verdict"] == "PASS" and row["measured"] == "0.75 > 0.5 > 0.25"
    assert row["published"] == "attack=fgsm > attack=pgd, steps=40 > attack=pgd, steps=100"
    row = _check(summary, records, metric="robust_accuracy", order=order, direction="increasing")
    assert row["verdict"] == "DIFFERS" and row["evidence"].startswith("not increasing at attack=fgsm vs")
    row = _check(
        summary, records, metric="robust_accuracy", order=[*order, {"attack": "cw"}], direction="decreasing"
    )
    assert row["verdict"] == "NOT RUN" and row["evidence"] == "attack=cw: no row matches attack=cw"


def test_a_gap_passes_when_larger_and_differs_when_not() -> None:
    def cw(key: str, library: str, d: float) -> tuple[dict[str, Any], pd.DataFrame]:
        dist = [d if i < 30 else 0.0 for i in range(N)]
        return cell(key, "cw", range(30), n=N, library=library, norm="l2", dist=dist, summary={"mean_l2": d})

    summary, records = run(cw("a", "art", 0.6), cw("b", "foolbox", 0.4))
    entry = {"metric": "mean_l2", "where": {"attack": "cw", "library": "art"}}
    row = _check(summary, records, **entry, greater_than={"library": "foolbox"})
    assert row["verdict"] == "PASS" and row["difference"] == pytest.approx(0.2)
    assert row["test"] == "wilcoxon" and row["p_value"] < 1e-3
    entry["where"] = {"attack": "cw", "library": "foolbox"}
    row = _check(summary, records, **entry, greater_than={"library": "art"})
    assert row["verdict"] == "DIFFERS" and row["evidence"].startswith("not larger: ")


@pytest.mark.parametrize(
    ("entry", "line"),
    [
        (
            {"metric": "robust_acc", "value": 0.3, "tolerance": 0.1},
            "expect[0].metric: unknown metric 'robust_acc'",
        ),
        (
            {"metric": "success_rate", "where": {"atack": "fgsm"}, "value": 0.3, "tolerance": 0.1},
            "expect[0].where: unknown column 'atack'",
        ),
        ({"metric": "success_rate", "value": 0.3}, "expect[0]: value needs tolerance"),
        (
            {"metric": "success_rate", "value": 0.3, "tolerance": 0.1, "equal_across": "library"},
            "expect[0]: give exactly one of value, equal_across, order, greater_than (got value, equal_acr",
        ),
        (
            {
                "metric": "success_rate",
                "order": [{"attack": "fgsm"}, {"attack": "cw"}],
                "direction": "decreasing",
            },
            "expect[0].order[1].attack: 'cw' is not one of the experiment's attacks (fgsm)",
        ),
        (
            {"metric": "success_rate", "order": [{"attack": "fgsm"}, {"library": "art"}]},
            "expect[0]: order needs direction",
        ),
        (
            {
                "metric": "success_rate",
                "where": {"library": "art"},
                "equal_across": "library",
                "tolerance": 0,
            },
            "expect[0]: where fixes library",
        ),
        ({"metric": "success_rate", "value": "high", "tolerance": 0.1}, "expect[0].value: must be a number"),
    ],
)
def test_a_bad_expectation_is_one_located_line(entry: dict[str, Any], line: str) -> None:
    errors = errors_of(exp_dict(expect=[{**entry, "source": "s"}]))
    assert len(errors) == 1 and errors[0].startswith(line), errors


def test_a_missing_source_is_located() -> None:
    errors = errors_of(exp_dict(expect=[{"metric": "success_rate", "value": 0.3, "tolerance": 0.1}]))
    assert errors == ["expect[0].source: Field required"]


def test_compare_finds_the_known_differences_and_the_cells_in_one_run_only() -> None:
    a = run(
        cell("f", "fgsm", range(10), n=N),
        cell("g", "fgsm", range(10), n=N, library="foolbox"),
        cell("p", "pgd", range(20), n=N, summary={"steps": 10}),
    )
    b = run(
        cell("f2", "fgsm", range(30), n=N),
        cell("g2", "fgsm", range(11), n=N, library="foolbox"),
        cell("p2", "pgd", range(20), n=N, summary={"steps": 20}),
    )
    table = compare_results(*a, *b)
    assert sorted(table["in"]) == ["A only", "B only", "both", "both"]
    both = table[table["in"] == "both"].set_index("library")
    assert both.loc["art", "difference"] == pytest.approx(0.5) and both.loc["art", "differs"]
    assert both.loc["art", "test"] == "mcnemar" and both.loc["art", "paired"]
    assert both.loc["foolbox", "difference"] == pytest.approx(1 / N) and not both.loc["foolbox", "differs"]
    assert table.loc[table["in"] == "A only", "steps"].tolist() == [10]
    assert table.loc[table["in"] == "B only", "steps"].tolist() == [20]
    text = differences_text(table, "A", "B")
    assert "2 cell settings in both runs; 1 differ" in text
    assert "only in A (A): 1 cell settings" in text and "only in B (B): 1 cell settings" in text
    # other samples (data): unpaired, the two-proportion test
    other = b[0].assign(data_sha256="e")
    unpaired = compare_results(*a, other, b[1]).set_index("library")
    art = unpaired[unpaired["in"] == "both"].loc["art"]
    assert not art["paired"] and art["test"] in ("z", "fisher") and art["differs"]


# -- the CLI and the report, on two tiny real runs ------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run A (with expect:) through the CLI, and run B with PGD's steps changed."""
    tmp = tmp_path_factory.mktemp("expect")
    exp = exp_dict(
        name="expect-a",
        data={"dataset": "digits", "n_samples": 16},
        libraries=["art"],
        attacks=[
            {"attack": "fgsm", "eps": 0.1},
            {"attack": "pgd", "eps": 0.1, "steps": 3, "step_size": 0.05, "random_start": False},
        ],
        expect=[  # verdicts known whatever the model: a rate lies in [0, 1]
            {
                "metric": "clean_accuracy",
                "where": {"attack": "fgsm"},
                "value": 0.5,
                "tolerance": 0.5,
                "source": "p1",
            },
            {
                "metric": "success_rate",
                "where": {"attack": "pgd"},
                "value": 2.0,
                "tolerance": 0.1,
                "source": "p2",
            },
            {"metric": "success_rate", "where": {"eps": 0.3}, "value": 0.5, "tolerance": 0.1, "source": "p3"},
        ],
    )
    path = tmp / "a.yaml"
    path.write_text(yaml.safe_dump(exp))
    common = ["--backend", "inline", "--no-progress", "--results-dir", str(tmp / "results")]
    out: dict[str, Any] = {"file": path}
    for name, extra in (("a", []), ("b", ["--out", str(tmp / "b"), "attacks.pgd.steps=6"])):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main(["run", str(path), *common, *extra]) == 0
        out[f"{name}_stdout"] = buf.getvalue()
    out["a"], out["b"] = tmp / "results" / "expect-a", tmp / "b"
    return out


def test_run_with_expect_prints_and_stores_the_table(runs: dict[str, Any]) -> None:
    text = runs["a_stdout"]
    assert text.index("head-to-head") < text.index("expect-a: published vs measured")
    assert "[PASS] clean_accuracy" in text and "[DIFFERS] success_rate" in text and "[NOT RUN]" in text
    assert "1 PASS, 1 DIFFERS, 1 NOT RUN" in text
    stored = pd.read_csv(runs["a"] / EXPECTATIONS_FILE)
    assert stored["verdict"].tolist() == ["PASS", "DIFFERS", "NOT RUN"]
    assert stored["source"].tolist() == ["p1", "p2", "p3"]


def test_compare_two_runs_and_against_the_expectations(
    runs: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = str(runs["a"]), str(runs["b"])
    assert main(["compare", a, b]) == 0
    out = capsys.readouterr().out
    assert "1 cell settings in both runs; 0 differ" in out  # FGSM: the same cell
    assert "only in A" in out and "only in B" in out
    table = compare_results(read_results(a).summary, None, read_results(b).summary, None)
    assert sorted(table["in"]) == ["A only", "B only", "both"]
    assert table.loc[table["in"] == "A only", "steps"].tolist() == [3]
    assert main(["compare", a, "--expect"]) == 0  # a report: 0 whatever the verdicts
    out = capsys.readouterr().out
    assert "published: 2 ± 0.1" in out and "[DIFFERS] success_rate" in out
    assert main(["compare", a, "--expect", str(runs["file"])]) == 0
    assert "1 PASS, 1 DIFFERS, 1 NOT RUN" in capsys.readouterr().out
    assert main(["compare", a]) == 2
    assert "give RESULTS_B" in capsys.readouterr().err
    assert main(["compare", a, str(runs["a"] / "nothing")]) == 2


def test_the_report_shows_published_vs_measured(runs: dict[str, Any], tmp_path: Path) -> None:
    md = write_report(runs["a"], tmp_path / "report").with_name("report.md").read_text()
    section = md[md.index("## Published vs measured") :]
    section = section[: section.index("\n## ", 1)]
    assert "| clean\\_accuracy |" in section and "PASS" in section and "DIFFERS" in section
    assert "1 PASS, 1 DIFFERS, 1 NOT RUN" in section
    plain = RunResult(read_results(runs["a"]).summary, pd.DataFrame(), manifest={"experiment": {"name": "x"}})
    fragment = SECTIONS["published-vs-measured"].build(ReportContext(plain, tmp_path))
    assert not fragment.available and "no expect: entries" in fragment.markdown
