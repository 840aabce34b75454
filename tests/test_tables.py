"""The head-to-head table shows every cell; results keep every stored cell; flat columns."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import exp_dict

from advharness.config.experiment import parse_experiment
from advharness.core.errors import HarnessError
from advharness.execution.orchestrate import run_experiment
from advharness.judging.referee import robust_accuracy_at, within_eps
from advharness.reporting.render import render_text, to_csv, to_latex, to_markdown
from advharness.reporting.results import read_results
from advharness.reporting.tables import head_to_head, table_rows

GRID = [
    {"attack": "pgd", "eps": 0.1, "steps": [2, 5], "step_size": 0.05},
    {"attack": "cw", "steps": 3, "params": {"binary_search_steps": 1, "learning_rate": [0.01, 0.05]}},
]


def _run(tmp_path: Path, **changes: Any) -> Any:
    exp = parse_experiment(exp_dict(**{"libraries": ["art"], **changes}))
    return run_experiment(exp, tmp_path / "results", backend="inline")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The README's grid shape (steps and a param vary) run with three seeds."""
    return _run(tmp_path_factory.mktemp("seeded"), attacks=GRID, seeds=[0, 1, 2])


def test_every_grid_cell_has_its_own_row(seeded: Any) -> None:
    s = seeded.summary
    assert len(s) == 4 * 3 and set(s["status"]) == {"ok"}
    table = seeded.table()
    assert len(table) == 4  # was 2: steps and learning_rate were not in the row key
    assert {"steps", "param_learning_rate"} <= set(table.index.names)
    assert (table[("art", "torch", "n_seeds")] == 3).all()
    text = render_text(s)
    for label in (
        "pgd linf eps=0.1 steps=2",
        "pgd linf eps=0.1 steps=5",
        "cw l2 learning_rate=0.01",
        "cw l2 learning_rate=0.05",
    ):
        assert label in text, text
    assert "n=3" in text and "±" in text
    # the table read back from disk is the same table
    back = read_results(seeded.path)
    pd.testing.assert_frame_equal(back.table(), table)


def test_seed_rows_are_mean_sd_and_n_or_apart(seeded: Any) -> None:
    s = seeded.summary
    per_seed = head_to_head(s, per_seed=True)
    assert len(per_seed) == 12 and "run_seed" in per_seed.index.names
    table = head_to_head(s)
    for steps in (2, 5):
        cells = s[(s["attack"] == "pgd") & (s["steps"] == steps)]
        row = table.xs(("pgd", steps), level=("attack", "steps")).iloc[0]
        vals = cells["robust_accuracy"].to_numpy()
        assert len(vals) == 3
        assert row[("art", "torch", "robust_accuracy")] == pytest.approx(vals.mean())
        assert row[("art", "torch", "robust_accuracy_sd")] == pytest.approx(vals.std(ddof=1))
    assert "seed=1" in render_text(s, per_seed=True)


def test_flat_spec_columns_and_record_identity(seeded: Any) -> None:
    s = seeded.summary
    for col in (
        "steps",
        "step_size",
        "restarts",
        "random_start",
        "target_mode",
        "budget",
        "param_learning_rate",
        "param_c",
        "kind",
        "cell_key",
        "data_sha256",
    ):
        assert col in s, col
    assert s["eps"].dtype == np.float64
    assert s.loc[s["attack"] == "cw", "eps"].isna().all()
    assert s.loc[s["attack"] == "pgd", "eps"].eq(0.1).all()
    assert sorted(s.loc[s["attack"] == "pgd", "steps"].unique()) == [2, 5]
    rec = seeded.records
    assert {"cell_key", "threat_model", "kind"} <= set(rec.columns)
    assert set(rec["kind"]) == {"fixed", "minimal"}
    merged = rec.merge(s[["cell", "cell_key"]], on="cell", suffixes=("", "_summary"))
    assert (merged["cell_key"] == merged["cell_key_summary"]).all()


def _fake(**changes: Any) -> dict[str, Any]:
    row = {
        "library": "art",
        "framework": "torch",
        "model": "m",
        "family": "f",
        "attack": "pgd",
        "kind": "fixed",
        "norm": "linf",
        "eps": 0.1,
        "targeted": False,
        "steps": 10,
        "threat_model": "white-box",
        "status": "ok",
        "reason": "",
        "success_rate": 0.5,
        "robust_accuracy": 0.5,
        "median_norm": 0.1,
        "time_s": 1.0,
        "queries_per_sample": 20.0,
        "run_seed": 0,
        "cell_key": "k",
    }
    return {**row, **changes}


def test_a_duplicate_row_key_is_a_bug_and_raises() -> None:
    s = pd.DataFrame([_fake(cell_key="a"), _fake(cell_key="b")])
    with pytest.raises(HarnessError, match="share the table row"):
        head_to_head(s)


def test_two_models_of_one_family_in_one_framework_get_rows_of_their_own() -> None:
    s = pd.DataFrame([_fake(model="small", robust_accuracy=0.1), _fake(model="wide", robust_accuracy=0.9)])
    table = head_to_head(s)
    assert len(table) == 2
    assert sorted(table[("art", "torch", "robust_accuracy")]) == [0.1, 0.9]
    # the torch and Keras versions of one model still share a row
    both = pd.DataFrame([_fake(model="m-torch"), _fake(model="m-tf", framework="tensorflow")])
    assert len(head_to_head(both)) == 1


def test_fields_that_do_not_vary_within_an_attack_stay_out_of_the_label() -> None:
    s = pd.DataFrame([_fake(), _fake(attack="fgsm", steps=1, cell_key="b")])
    rows = table_rows(s)
    assert [r.label for r in rows] == ["pgd linf eps=0.1", "fgsm linf eps=0.1"]


def test_show_reads_every_stored_cell_filters_and_formats(tmp_path: Path) -> None:
    first = _run(tmp_path, attacks=[{"attack": "pgd", "eps": 0.1, "steps": 2, "step_size": 0.05}])
    # a second run of the same experiment with another setting (as an override would)
    second = _run(
        tmp_path,
        attacks=[
            {"attack": "pgd", "eps": 0.1, "steps": 5, "step_size": 0.05},
            {"attack": "fgsm", "eps": 0.1},
        ],
    )
    assert second.manifest["cells_run_now"] == 2
    assert len(second.summary) == 3  # the first run's cell is kept
    back = read_results(first.path)
    assert sorted(back.summary["steps"].dropna()) == [1, 2, 5]
    assert len(pd.read_parquet(first.path / "summary.parquet")) == 3

    def show(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "advharness", "show", str(first.path), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    p = show()
    assert p.returncode == 0, p.stderr
    assert "steps=2" in p.stdout and "steps=5" in p.stdout and "fgsm linf eps=0.1" in p.stdout
    p = show("--attack", "fgsm", "--format", "md")
    assert p.returncode == 0 and p.stdout.startswith("| attack | art torch |")
    assert "fgsm" in p.stdout and "pgd" not in p.stdout
    p = show("--format", "csv", "--library", "art")
    csv = p.stdout.splitlines()
    assert p.returncode == 0 and len(csv) == 4 and "art/torch/robust_accuracy" in csv[0]
    p = show("--format", "latex")
    assert p.returncode == 0 and "\\begin{tabular}" in p.stdout and "\\toprule" in p.stdout
    p = show("--model", "nope")
    assert p.returncode == 2 and "--model nope: not in these results" in p.stderr
    key = back.summary["cell_key"].iloc[0]
    p = show("--cell", key[:10])
    assert p.returncode == 0 and f"cell_key: {key}" in p.stdout and "library_call:" in p.stdout


def test_minimum_norm_eps_only_changes_reporting(tmp_path: Path) -> None:
    cw = {"attack": "cw", "steps": 3, "params": {"binary_search_steps": 1}}
    plain = _run(tmp_path, attacks=[cw])
    assert plain.manifest["cells_run_now"] == 1
    cell_file = next((plain.path / "cells").glob("*.json"))
    computed = cell_file.read_text()
    with_eps = _run(tmp_path, attacks=[{**cw, "eps": [0.5, 1.5]}])
    assert with_eps.manifest["cells_run_now"] == 0  # the stored cell serves every radius
    assert cell_file.read_text() == computed  # what a run asks for is in plans/, not the cell
    assert len(list((plain.path / "plans").glob("*.json"))) == 2
    s = with_eps.summary
    assert s["cell_key"].nunique() == 1 and len(s) == 3
    assert sorted(s["eps"].fillna(-1)) == [-1, 0.5, 1.5]
    rec = with_eps.records
    for _, row in s[s["eps"].notna()].iterrows():
        r = rec[rec["cell"] == row["cell"]]
        at = r["success"] & within_eps(r["l2"].to_numpy(), row["eps"])
        assert (r["success_at_eps"] == at).all()
        assert row["success_rate_at_eps"] == pytest.approx(at.sum() / r["correct"].sum())
        curve = robust_accuracy_at(r, "l2", [row["eps"]])
        assert row["robust_accuracy_at_eps"] == pytest.approx(curve.iloc[0])
    assert len(head_to_head(s)) == 3
    # a later run without eps still reports every radius asked for
    again = read_results(plain.path)
    assert sorted(again.summary["eps"].fillna(-1)) == [-1, 0.5, 1.5]


def test_superseded_cells_are_left_out(tmp_path: Path) -> None:
    res = _run(tmp_path, attacks=[{"attack": "fgsm", "eps": 0.1}])
    cells = res.path / "cells"
    key = res.summary["cell_key"].iloc[0]
    old = json.loads((cells / f"{key}.json").read_text())
    old.update(finished_at=1.0, planned_at=1.0, success_rate=-1.0)  # an older version's cell
    (cells / ("0" * 24 + ".json")).write_text(json.dumps(old))
    back = read_results(res.path)
    assert back.superseded == 1 and len(back.summary) == 1
    assert back.summary["success_rate"].iloc[0] >= 0


def test_all_formats_agree_on_the_rows(seeded: Any) -> None:
    s = seeded.summary
    assert to_markdown(s).count("\n| ") == 4  # header excluded: 4 rows + separator
    assert to_latex(s).count(" \\\\\n") >= 5
    assert len(to_csv(s).splitlines()) == 5
