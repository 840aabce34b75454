"""``checks: [convergence]``: twin cells with 2x steps and restarts on a subsample, planned
and keyed, paired with their base cells by :func:`convergence_changes`, which flags a
too-short attack and not a converged one (Carlini et al. 2019 checklist)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from conftest import errors_of, exp_dict

from advharness.analytics.convergence import COLUMNS, convergence_changes
from advharness.config.experiment import parse_experiment
from advharness.execution.orchestrate import run_experiment
from advharness.execution.plan import CellTask, plan_cells
from advharness.zoo.data import load_dataset

ATTACKS: list[dict[str, Any]] = [
    {"attack": "pgd", "eps": 0.1, "steps": 10, "random_start": True, "restarts": 2},
    {"attack": "pgd", "eps": 0.1, "steps": 10},  # no random start: restarts stay 1
    {"attack": "bim", "eps": 0.1, "steps": 3, "step_size": 0.05},
    {"attack": "apgd", "eps": 0.1},
    {"attack": "square", "eps": 0.1, "steps": 50, "budget": 100},
    {"attack": "fgsm", "eps": 0.1},  # not iterative
    {"attack": "cw", "steps": 5},  # minimum-norm
    {"attack": "noise", "eps": 0.1},  # no steps
    {"attack": "pgd", "steps": 5, "search": {"eps": {"start": 0.05, "max": 0.2}}},  # a search
]
#: (steps, restarts, step_size, budget) each twin must have, in the order of ATTACKS
TWINS = [
    (20, 4, 2.5 * 0.1 / 10, None),
    (20, 1, 2.5 * 0.1 / 10, None),
    (6, 1, 0.05, None),
    (200, 2, 0.2, None),
    (100, 1, None, 200),
]


def _plan(samples: int = 4) -> list[CellTask]:
    exp = parse_experiment(
        exp_dict(
            attacks=ATTACKS, libraries=["art", "foolbox"], checks=["convergence"], convergence_samples=samples
        )
    )
    return plan_cells(exp, load_dataset("digits", n_samples=8), {})


def test_convergence_cells_are_planned_keyed_and_after_the_others() -> None:
    tasks = _plan()
    base = [t for t in tasks if "check" not in t.row]
    twins = [t for t in tasks if "check" in t.row]
    assert len(base) == len(ATTACKS) * 2 and len(twins) == len(TWINS) * 2
    assert tasks[: len(base)] == base  # ordinary cells keep their table order
    by_key = {t.key: t for t in base}
    for twin, (steps, restarts, step_size, budget) in zip(
        twins, [w for w in TWINS for _ in "ab"], strict=True
    ):
        of = by_key[twin.row["check_of"]]
        assert (twin.row["check"], twin.row["check_samples"], twin.samples, twin.row["n"]) == (
            "convergence",
            4,
            4,
            4,
        )
        assert (twin.model, twin.library, twin.seed, twin.run_seed) == (
            of.model,
            of.library,
            of.seed,
            of.run_seed,
        )
        assert twin.row["steps"] == steps == 2 * of.row["steps"]
        assert twin.row["restarts"] == restarts
        # the base's resolved step size, not the default rule at 2x steps (NaN: none)
        assert twin.row["step_size"] == pytest.approx(step_size if step_size else float("nan"), nan_ok=True)
        assert twin.row["step_size"] == pytest.approx(of.row["step_size"], nan_ok=True)
        assert twin.row["budget"] == budget
        assert twin.row["eps"] == of.row["eps"] and twin.row["attack"] == of.row["attack"]
    keys = [t.key for t in tasks]
    assert len(set(keys)) == len(keys)
    # stable; the subsample size is part of a twin's key and not of its base's
    assert [t.key for t in _plan()] == keys
    other = _plan(samples=3)
    assert [t.key for t in other[: len(base)]] == keys[: len(base)]
    assert not {t.key for t in other[len(base) :]} & set(keys)
    # without the check: the same ordinary cells, no twins
    plain = plan_cells(
        parse_experiment(exp_dict(attacks=ATTACKS, libraries=["art", "foolbox"])),
        load_dataset("digits", n_samples=8),
        {},
    )
    assert [t.key for t in plain] == keys[: len(base)]


def test_convergence_flags_a_short_pgd_and_not_a_converged_one(tmp_path: Any) -> None:
    exp = parse_experiment(
        {
            "name": "convergence",
            "data": {"dataset": "digits", "n_samples": 64},
            "models": [{"recipe": "digits_mlp", "framework": "torch"}],
            "libraries": ["foolbox"],
            "checks": ["convergence"],
            "convergence_samples": 32,
            "attacks": [
                {"attack": "pgd", "eps": 0.2, "steps": 2, "step_size": 0.02},  # moves 0.04 at most
                {"attack": "pgd", "eps": 0.2, "steps": 40, "step_size": 0.02},
            ],
        }
    )
    res = run_experiment(exp, tmp_path, backend="inline")
    s = res.summary
    assert (s["status"] == "ok").all(), s["reason"].tolist()
    twins = s[s["check"] == "convergence"]
    assert sorted(twins["steps"]) == [4, 80] and (twins["n"] == 32).all()
    for _, t in twins.iterrows():
        rec = res.records[res.records["cell_key"] == t["cell_key"]]
        assert sorted(rec["sample"]) == list(range(32))
    table = convergence_changes(s, res.records).set_index("steps_1x")
    assert list(table.columns) == [c for c in COLUMNS if c != "steps_1x"]
    short, long = table.loc[2], table.loc[40]
    assert short["not_converged"], short.to_dict()
    assert short["successes_2x"] - short["successes_1x"] >= 5 and short["change"] > 0.1
    assert not long["not_converged"], long.to_dict()
    assert abs(long["change"]) <= 0.02
    assert short["base_cell_key"] in set(s["cell_key"]) and "Carlini" in short["rule"]
    # the 1x numbers are the base cell's own records on the same samples
    base = res.records[(res.records["cell_key"] == short["base_cell_key"]) & (res.records["sample"] < 32)]
    assert short["successes_1x"] == int((base["success"] & base["correct"]).sum())


def _cells(gains: list[tuple[int, int, int]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A summary and records with one (base, twin) pair per ``(n, successes_1x,
    successes_2x)``: all n samples correct, the first successes fooled."""
    rows, recs = [], []
    for i, (n, s1, s2) in enumerate(gains):
        for key, s, check in ((f"b{i}", s1, None), (f"t{i}", s2, "convergence")):
            rows.append(
                {
                    "cell_key": key,
                    "status": "ok",
                    "check": check,
                    "check_of": f"b{i}" if check else None,
                    "check_samples": n if check else None,
                    "model": "m",
                    "attack": "pgd",
                    "steps": 20 if check else 10,
                }
            )
            recs += [
                {"cell_key": key, "sample": j, "correct": True, "success": j < s}
                for j in range(n + (0 if check else 5))
            ]
    return pd.DataFrame(rows), pd.DataFrame(recs)


def test_the_flag_needs_more_than_one_sample_and_more_than_two_points() -> None:
    summary, records = _cells([(50, 10, 11), (50, 10, 12), (200, 10, 12), (200, 10, 15), (40, 8, 5)])
    table = convergence_changes(summary, records)
    assert table["not_converged"].tolist() == [False, True, False, True, False]
    assert table["n_attacked"].tolist() == [50, 50, 200, 200, 40]
    assert table["n_lost"].tolist() == [0, 0, 0, 0, 3]
    assert table.loc[1, "change"] == pytest.approx(0.04)
    # a base cell that failed, or no twins at all: nothing to pair
    summary.loc[summary["cell_key"] == "b1", "status"] = "error"
    assert len(convergence_changes(summary, records)) == 4
    assert convergence_changes(summary.drop(columns="check"), records).empty


def test_checks_are_validated() -> None:
    assert errors_of(exp_dict(checks=["convergance"]))[0].startswith(
        "checks[0]: Input should be 'convergence'"
    )
    assert errors_of(exp_dict(checks=["convergence", "convergence"])) == [
        "checks: checks are listed more than once"
    ]
    assert errors_of(exp_dict(convergence_samples=0)) == ["convergence_samples: must be >= 1"]
