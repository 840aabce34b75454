"""The hardening loop end to end: rounds, the stop at the target, the before/after table,
the tables on disk, the CLI, and the report's defenses section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from advharness.analytics import defense_worst_case
from advharness.cli import main
from advharness.config.experiment import parse_experiment
from advharness.core.errors import HarnessError
from advharness.execution.harden import harden, harden_tables

BASE = "digits_mlp-torch"
SQUEEZE = f"{BASE}+feature_squeezing"
TRAINED = f"{BASE}+adversarial_training"
EXP: dict[str, Any] = {
    "name": "harden",
    "data": {"dataset": "digits", "n_samples": 48},
    "models": [{"recipe": "digits_mlp", "framework": "torch"}],
    "libraries": ["foolbox", "cleverhans"],
    "attacks": [
        {"attack": "fgsm", "eps": 0.1},
        {"attack": "pgd", "norm": "linf", "eps": 0.1, "steps": 10, "step_size": 0.02},
    ],
    "defenses": [
        {"defense": "feature_squeezing", "of": BASE, "params": {"bit_depth": 3}},
        {
            "defense": "adversarial_training",
            "of": BASE,
            "params": {"method": "fgsm_rs", "eps": 0.1, "step_size": 0.125, "steps": 1, "ratio": 1.0},
        },
    ],
}


@pytest.fixture(scope="module")
def every_round(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    out = tmp_path_factory.mktemp("harden") / "run"
    return harden(parse_experiment(EXP), target=None, out_dir=out, backend="inline"), out


def test_without_a_target_every_round_runs_and_is_reported(every_round: tuple[Any, Path]) -> None:
    h, out = every_round
    assert [r.defense for r in h.rounds] == [None, SQUEEZE, TRAINED]
    assert h.stopped == "defenses exhausted" and "all 3 rounds ran" in h.verdict()
    # each round's rate is the defense's per-sample worst case, recomputed from the stored run
    worst = defense_worst_case(h.result.summary, h.result.records).set_index("defended_model")
    for r in h.rounds:
        assert r.worst_case_success_rate == pytest.approx(
            float(worst.loc[r.models[0], "worst_case_success_rate"])
        )
    # the squeezing defense was attacked adaptively (BPDA) and by transfer from the base model
    cells = h.result.summary[h.result.summary["defended_model"] == SQUEEZE]
    assert set(cells["adaptive"]) == {"", "bpda"} and "transfer" in set(cells["threat_model"])
    assert set(cells.loc[cells["adaptive"] == "bpda", "model"]) == {f"{SQUEEZE}@bpda"}
    # its deployed white-box cells see zero gradients: BPDA breaks far more samples
    rates = worst.loc[SQUEEZE]
    assert rates["non-adaptive_success_rate"] < rates["adaptive_success_rate"]
    # FGSM-RS adversarial training lowers the worst case at its own eps (its documented effect)
    assert h.rounds[2].worst_case_success_rate < h.rounds[0].worst_case_success_rate - 0.1
    rounds = pd.read_csv(out / "harden_rounds.csv")
    assert rounds["round"].tolist() == [0, 1, 2] and rounds["defense"].tolist()[1:] == [SQUEEZE, TRAINED]
    table: Any = pd.read_csv(out / "harden.csv", index_col=0)
    assert list(table.columns) == [BASE, SQUEEZE, TRAINED]
    assert "worst case over the pool (linf eps=0.1)" in table.index
    assert "fgsm linf eps=0.1 [foolbox] via bpda" in table.index
    assert float(table.loc["training time (s)", TRAINED]) > 0
    assert (out / "defense_worst_case.csv").is_file()


def test_the_loop_stops_at_the_first_round_that_reaches_the_target(every_round: tuple[Any, Path]) -> None:
    done, out = every_round
    rates = [r.worst_case_success_rate for r in done.rounds]
    first = min(range(len(rates)), key=lambda i: (rates[i], i))
    assert first > 0  # some defense lowered the worst case
    h = harden(parse_experiment(EXP), target=rates[first], out_dir=out, backend="inline")
    assert [r.index for r in h.rounds] == list(range(first + 1))  # later defenses never ran
    assert [r.reached for r in h.rounds] == [False] * first + [True]
    assert h.stopped == "target reached" and h.verdict().startswith(f"target reached: round {first}")
    # a target the undefended model already meets stops at round 0
    assert [
        r.index for r in harden(parse_experiment(EXP), target=1.0, out_dir=out, backend="inline").rounds
    ] == [0]


def test_an_unreachable_target_says_which_round_came_closest(every_round: tuple[Any, Path]) -> None:
    _, out = every_round
    h = harden(parse_experiment(EXP), target=0.0, out_dir=out, backend="inline")
    assert min(r.worst_case_success_rate for r in h.rounds) > 0.0, "no round may reach target 0 here"
    assert h.stopped == "defenses exhausted" and len(h.rounds) == 3
    assert "no round reached target 0" in h.verdict() and "lowest worst-case success rate" in h.verdict()
    rounds, table = harden_tables(h, parse_experiment(EXP))
    assert not rounds["reached"].any() and (table.loc["clean accuracy"] != "").all()


def test_the_cli_prints_the_rounds_the_table_and_the_verdict(
    every_round: tuple[Any, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import yaml

    _, out = every_round
    path = tmp_path / "harden.yaml"
    path.write_text(yaml.safe_dump({**EXP, "target_success_rate": 1.0}))
    assert main(["harden", str(path), "--out", str(out), "--backend", "inline", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "harden: hardening rounds" in text and "before / after" in text
    assert "target reached: round 0 (undefended)" in text and f"results: {out}" in text


def test_the_report_has_the_defenses_section(every_round: tuple[Any, Path], tmp_path: Path) -> None:
    from advharness.reporting.report import write_report

    _, out = every_round
    md = write_report(out, tmp_path / "report").with_name("report.md").read_text()
    section = md[md.index("## Defenses") :].split("\n## ")[0]
    assert "Worst case per defended model" in section and SQUEEZE.replace("_", "\\_") in section


def test_harden_needs_defenses_and_a_target_in_range(tmp_path: Path) -> None:
    plain = parse_experiment({**EXP, "defenses": []})
    with pytest.raises(HarnessError, match="has no defenses to harden with"):
        harden(plain, out_dir=tmp_path)
    with pytest.raises(HarnessError, match=r"target success rate must be in \[0, 1\], got 1.5"):
        harden(parse_experiment(EXP), target=1.5, out_dir=tmp_path)
