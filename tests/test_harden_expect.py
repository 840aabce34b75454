"""``advharness harden`` with ``expect:``: published vs measured over the whole loop's
results, printed after the rounds and stored as ``expectations.csv``, as a run does; an
entry may name a defended model that only a later round builds."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from advharness.cli import main
from advharness.config.experiment import parse_experiment
from advharness.execution.harden import harden
from advharness.reporting.compare import EXPECTATIONS_FILE

BASE = "digits_mlp-torch"
SQUEEZE = f"{BASE}+feature_squeezing"
EXP: dict[str, Any] = {
    "name": "harden-expect",
    "data": {"dataset": "digits", "n_samples": 16},
    "models": [{"recipe": "digits_mlp", "framework": "torch"}],
    "libraries": ["foolbox"],
    "attacks": [{"attack": "fgsm", "eps": 0.1}],
    "defenses": [{"defense": "feature_squeezing", "of": BASE, "params": {"bit_depth": 3}}],
    "deviations": ["16 digits, not the paper's test set"],
    "expect": [  # verdicts known whatever the model: a rate lies in [0, 1]
        {
            "metric": "clean_accuracy",
            "where": {"model": SQUEEZE},
            "value": 0.5,
            "tolerance": 0.5,
            "source": "p1",
        },
        {"metric": "success_rate", "where": {"model": BASE}, "value": 2.0, "tolerance": 0.1, "source": "p2"},
        {"metric": "success_rate", "where": {"eps": 0.3}, "value": 0.5, "tolerance": 0.1, "source": "p3"},
    ],
}


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The CLI's output of the whole loop (no target: both rounds), and its directory."""
    tmp = tmp_path_factory.mktemp("harden-expect")
    path = tmp / "exp.yaml"
    path.write_text(yaml.safe_dump(EXP))
    out = tmp / "run"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["harden", str(path), "--out", str(out), "--backend", "inline", "--no-progress"]) == 0
    return buf.getvalue(), out


def test_harden_prints_published_vs_measured_after_the_rounds(hardened: tuple[str, Path]) -> None:
    text, _ = hardened
    order = [
        "hardening rounds",
        "before / after",
        "harden-expect: published vs measured",
        "defenses exhausted",
    ]
    positions = [text.index(s) for s in order]
    assert positions == sorted(positions), text
    assert "deviations from the published setting:\n  - 16 digits" in text
    assert f"[PASS] clean_accuracy (value) where model={SQUEEZE}" in text
    assert "1 PASS, 1 DIFFERS, 1 NOT RUN" in text


def test_harden_stores_the_table_over_every_round(hardened: tuple[str, Path]) -> None:
    from advharness.reporting.results import read_results

    _, out = hardened
    stored = pd.read_csv(out / EXPECTATIONS_FILE)
    assert stored["verdict"].tolist() == ["PASS", "DIFFERS", "NOT RUN"]
    summary = read_results(out).summary
    ok = summary[summary["status"] == "ok"]
    # round 1's defended cells and round 0's undefended ones, each counted
    assert stored.loc[0, "n_cells"] == (ok["model"] == SQUEEZE).sum() > 0
    assert stored.loc[1, "n_cells"] == (ok["model"] == BASE).sum() > 0


def test_compare_rechecks_a_harden_run_from_its_manifest(
    hardened: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = hardened
    assert main(["compare", str(out), "--expect"]) == 0
    assert "1 PASS, 1 DIFFERS, 1 NOT RUN" in capsys.readouterr().out


def test_an_entry_on_a_round_that_never_ran_is_not_run(tmp_path: Path) -> None:
    h = harden(parse_experiment(EXP), target=1.0, out_dir=tmp_path / "early", backend="inline")
    assert [r.index for r in h.rounds] == [0]  # the undefended model meets target 1
    stored = pd.read_csv(tmp_path / "early" / EXPECTATIONS_FILE)
    assert stored["verdict"].tolist() == ["NOT RUN", "DIFFERS", "NOT RUN"]
    assert stored.loc[0, "evidence"] == f"no row matches model={SQUEEZE}"
