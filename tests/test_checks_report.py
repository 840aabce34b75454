"""The sanity checks where a user sees them: a marker on each flagged entry of the
head-to-head table with the rules under it (every format), and a list after the table in
``advharness run`` and ``advharness show``, quiet when no check fires."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from checks_helpers import cell, run
from conftest import exp_dict

from advharness.analytics import CHECKS, sanity_checks
from advharness.cli import main
from advharness.config.experiment import parse_experiment
from advharness.execution.orchestrate import run_experiment
from advharness.reporting.render import render_text, sanity_list, to_csv, to_latex, to_markdown
from advharness.reporting.tables import head_to_head

R = range


@pytest.fixture
def flagged() -> tuple[pd.DataFrame, pd.DataFrame]:
    """FGSM (art) breaking samples PGD (foolbox) missed, and a sound BIM (art)."""
    s, r = run(
        cell("f", "fgsm", R(30)),
        cell("ok", "bim", R(30)),
        cell("p", "pgd", R(5), library="foolbox"),
    )
    return s, sanity_checks(s, r)


def test_flagged_entries_are_marked_and_the_rules_listed(flagged: Any) -> None:
    s, checks = flagged
    assert set(checks["check"]) == {"single_step_beats_iterative_samples", "single_step_beats_iterative_rate"}
    text = render_text(s, checks=checks, width=200)
    assert text.count("checks [a,b]") == 1  # the pgd (foolbox) FGSM beat; not fgsm, not bim
    rule = CHECKS["single_step_beats_iterative_samples"].rule
    assert "[a] single_step_beats_iterative_samples (warning): a single-step" in text
    assert "[b] single_step_beats_iterative_rate (error)" in text and "source: Carlini" in text
    assert rule.split()[0] in text
    assert "checks [" not in render_text(s) and "checks [" not in render_text(s, checks=checks.iloc[0:0])
    md = to_markdown(s, checks=checks)
    assert "checks [a,b]" in md and "\n[a] single_step_beats_iterative_samples" in md
    latex = to_latex(s, checks=checks)
    assert "checks [a,b]" in latex and "% [b] single_step_beats_iterative_rate" in latex
    table = head_to_head(s, checks=checks)
    pgd = table.xs("pgd", level="attack").iloc[0][("foolbox", "torch", "checks")]
    assert pgd == "single_step_beats_iterative_samples,single_step_beats_iterative_rate"
    for attack in ("fgsm", "bim"):
        assert table.xs(attack, level="attack").iloc[0][("art", "torch", "checks")] == ""
    assert "foolbox/torch/checks" in to_csv(s, checks=checks).splitlines()[0]
    assert "checks" not in head_to_head(s).columns.get_level_values("metric")


def test_sanity_list_is_one_line_per_flag_and_empty_when_none(flagged: Any) -> None:
    _, checks = flagged
    lines = sanity_list(checks).splitlines()
    assert lines[0].startswith("sanity checks (2 flags") and len(lines) == 3
    assert lines[1].startswith("  [warning] single_step_beats_iterative_samples: fgsm (art) broke")
    assert sanity_list(checks.iloc[0:0]) == "" and sanity_list(None) == ""


def _run(tmp_path: Path, attacks: list[dict[str, Any]]) -> Any:
    exp = parse_experiment(
        exp_dict(data={"dataset": "digits", "n_samples": 24}, libraries=["art"], attacks=attacks)
    )
    return run_experiment(exp, tmp_path / "results", backend="inline")


def test_show_lists_the_flags_after_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    short = {"attack": "pgd", "eps": 0.1, "steps": 1, "step_size": 0.001, "random_start": False}
    res = _run(tmp_path, [{"attack": "fgsm", "eps": 0.1}, short])
    assert main(["show", str(res.path)]) == 0
    out = capsys.readouterr().out
    assert "checks [a,b]" in out and "[a] single_step_beats_iterative_samples" in out
    assert "sanity checks (2 flags" in out and "[error] single_step_beats_iterative_rate: fgsm (art)" in out
    # filtered to FGSM: the flags on the PGD still name it (its reference), no marker on it
    assert main(["show", str(res.path), "--attack", "fgsm"]) == 0
    out = capsys.readouterr().out
    assert "sanity checks (2 flags" in out and "checks [" not in out
    assert main(["show", str(res.path), "--format", "csv"]) == 0
    csv = capsys.readouterr().out
    assert "art/torch/checks" in csv.splitlines()[0] and "sanity checks (" not in csv


def test_a_sound_run_shows_no_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = _run(
        tmp_path,
        [{"attack": "fgsm", "eps": 0.1}, {"attack": "pgd", "eps": 0.1, "steps": 20, "step_size": 0.01}],
    )
    assert main(["show", str(res.path)]) == 0
    out = capsys.readouterr().out
    assert "head-to-head" in out and "sanity checks (" not in out and "checks [" not in out
