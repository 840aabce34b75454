"""An experiment file through the CLI and the Python API: tables, files, manifest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from advharness.config.experiment import parse_experiment
from advharness.execution.orchestrate import run_experiment
from advharness.reporting.render import render_text
from advharness.reporting.results import read_results
from advharness.reporting.tables import head_to_head

EXP: dict[str, Any] = {
    "name": "e2e",
    "seed": 3,
    "data": {"dataset": "digits", "n_samples": 24},
    "models": [
        {"recipe": "digits_mlp", "framework": "torch"},
        {"recipe": "digits_mlp", "framework": "tensorflow"},
    ],
    "libraries": ["art", "foolbox", "cleverhans"],
    "attacks": [
        {"attack": "fgsm", "eps": 0.1},
        {
            "attack": "pgd",
            "norm": "linf",
            "eps": 0.1,
            "steps": 5,
            "step_size": 0.03,
            "random_start": True,
            "restarts": 2,
        },
        {
            "attack": "pgd",
            "norm": "linf",
            "eps": 0.1,
            "steps": 5,
            "step_size": 0.03,
            "targeted": True,
            "target_mode": "least_likely",
        },
        {"attack": "cw", "steps": 10, "params": {"binary_search_steps": 1}},
        {"attack": "jsma"},
    ],
}


def test_run_write_read_show(tmp_path: Path) -> None:
    res = run_experiment(parse_experiment(EXP), tmp_path)
    assert res.path == tmp_path / "e2e"
    s = res.summary
    assert len(s) == 2 * 5 * 3
    # gaps are rows with reasons, never missing
    unsup = s[s["status"] == "unsupported"]
    assert set(s["status"]) <= {"ok", "unsupported"}, s.loc[s["status"] == "error", "reason"].tolist()
    assert (unsup["reason"].str.len() > 10).all()
    assert ((s["attack"] == "jsma") & (s["library"] == "foolbox")).sum() == 2
    cw_ch_tf = s[(s["attack"] == "cw") & (s["library"] == "cleverhans") & (s["framework"] == "tensorflow")]
    assert cw_ch_tf["status"].tolist() == ["unsupported"]
    ok = s[s["status"] == "ok"]
    assert (ok["queries_per_sample"] > 0).all() and (ok["time_s"] > 0).all()
    assert ok["library_call"].map(lambda c: json.loads(c)["callable"]).str.len().gt(0).all()
    # the same targets were handed to every library
    rec = res.records
    tgt = rec[rec["targeted"]].groupby(["framework", "sample"])["target"].nunique()
    assert (tgt == 1).all()
    assert (rec.loc[rec["targeted"], "target"] != rec.loc[rec["targeted"], "label"]).all()
    # files on disk and back
    back = read_results(res.path)
    pd.testing.assert_frame_equal(back.summary, s, check_dtype=False)
    man = back.manifest
    assert {"adversarial-robustness-toolbox", "foolbox", "cleverhans", "torch", "tensorflow", "numpy"} <= set(
        man["versions"]
    )
    assert len(man["data"]["sha256"]) == 64 and man["seed"] == 3
    assert len(man["resolved_specs"]) == 5
    # the head-to-head table: one row per (attack, norm, eps, targeted), groups per (lib, fw)
    table = head_to_head(s)
    assert len(table) == 5
    assert {(c[0], c[1]) for c in table.columns} == {
        (lib, fw) for lib in ("art", "foolbox", "cleverhans") for fw in ("torch", "tensorflow")
    }
    text = render_text(s)
    assert "fgsm linf eps=0.1" in text and "unsupported" in text
    # show from disk prints the same table
    p = subprocess.run(
        [sys.executable, "-m", "advharness", "show", str(res.path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0 and "fgsm linf eps=0.1" in p.stdout


@pytest.mark.numerics
def test_same_seed_same_table(tmp_path: Path) -> None:
    """Same seed, same process, same kernels: the same numbers, exactly (by construction).
    Marked ``numerics``: the suite also runs it under the other oneDNN setting."""
    exp = parse_experiment({**EXP, "attacks": EXP["attacks"][1:3], "libraries": ["art", "foolbox"]})
    a = run_experiment(exp, None, backend="inline").summary
    b = run_experiment(exp, None, backend="inline").summary
    cols = ["success_rate", "robust_accuracy", "median_norm", "queries_per_sample"]
    pd.testing.assert_frame_equal(a[cols], b[cols])


def test_cli_list_prints_the_matrix() -> None:
    p = subprocess.run(
        [sys.executable, "-m", "advharness", "list", "--reasons"], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0
    for needle in ("fgsm linf", "jsma l0", "apgd l2", "cleverhans", "Keras 3"):
        assert needle in p.stdout
