"""Every shipped reproduction's quick profile runs and prints published vs measured, with
its deviations, and stores the comparison (experiments/reproductions/)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from advharness.cli import main
from advharness.config.experiment import load_experiment

ROOT = Path(__file__).resolve().parents[1]
REPRODUCTIONS = sorted((ROOT / "experiments" / "reproductions").glob("*.yaml"))


def test_the_shipped_reproductions_are_there() -> None:
    names = {p.stem for p in REPRODUCTIONS}
    assert {"goodfellow_fgsm", "madry_mnist", "torchattacks_table", "attackbench_protocol"} <= names
    for path in REPRODUCTIONS:
        exp = load_experiment(path)
        assert exp.expect and exp.deviations and exp.quick, path.name
        assert all(e.source for e in exp.expect), path.name


@pytest.mark.parametrize("path", REPRODUCTIONS, ids=[p.stem for p in REPRODUCTIONS])
def test_the_quick_profile_runs_and_prints_its_comparison(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exp = load_experiment(path, quick=True)
    args = [
        "run",
        str(path),
        "--quick",
        "--backend",
        "inline",
        "--no-progress",
        "--results-dir",
        str(tmp_path),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"{exp.name}: published vs measured" in out and "deviations from the published setting:" in out
    assert all(d in out for d in exp.deviations)
    table = pd.read_csv(tmp_path / exp.name / "expectations.csv")
    assert len(table) == len(exp.expect)
    # every finding was measured (a verdict, PASS or DIFFERS), none left unrun by the profile
    assert set(table["verdict"]) <= {"PASS", "DIFFERS"}, table[["expectation", "verdict", "evidence"]]
    assert all(f"[{v}]" in out for v in table["verdict"])
