"""Batch runs: backends agree, faults become rows, a killed run resumes to the same table."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from advharness.cli import main
from advharness.config.experiment import parse_experiment
from advharness.execution.orchestrate import run_experiment

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
#: Columns that legitimately differ between two runs of the same cells.
VOLATILE = ["time_s", "cell_key", "worker_pid", "worker_rss_mb"]


def comparable(summary: pd.DataFrame) -> pd.DataFrame:
    return summary.drop(columns=[c for c in VOLATILE if c in summary]).reset_index(drop=True)


def small_grid(name: str, **extra: Any) -> dict[str, Any]:
    """12 cells: two digits MLPs (torch, Keras) x FGSM, PGD with random start x 3 libraries."""
    return {
        "name": name,
        "seed": 3,
        "data": {"dataset": "digits", "n_samples": 24},
        "models": [
            {"recipe": "digits_mlp", "framework": "torch"},
            {"recipe": "digits_mlp", "framework": "tensorflow"},
        ],
        "attacks": [
            {"attack": "fgsm", "eps": 0.1},
            {"attack": "pgd", "eps": 0.1, "steps": 5, "step_size": 0.03, "random_start": True},
        ],
        **extra,
    }


def test_pool_and_inline_give_the_same_table(tmp_path: Path) -> None:
    """Exact by construction: pool workers inherit this process's environment (oneDNN
    setting included), seed each cell as inline does and run the same kernels."""
    exp = parse_experiment(small_grid("agree"))
    inline = run_experiment(exp, out_dir=tmp_path / "inline", backend="inline")
    pool = run_experiment(exp, out_dir=tmp_path / "pool", backend="pool", workers=2)
    assert set(inline.summary["status"]) == {"ok"}
    pd.testing.assert_frame_equal(comparable(inline.summary), comparable(pool.summary))
    pd.testing.assert_frame_equal(inline.records, pool.records)
    assert pool.manifest["backend"] == "pool" and pool.manifest["cells_run_now"] == 12
    again = run_experiment(exp, out_dir=tmp_path / "pool", backend="pool", workers=2)
    assert again.manifest["cells_run_now"] == 0  # everything was stored: nothing re-ran
    pd.testing.assert_frame_equal(again.summary, pool.summary)


def test_faults_become_rows_and_other_cells_finish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS))  # faulty.py, for the spawned workers too
    eps = {
        0.01: "error",
        0.02: "error",
        0.03: "timeout",
        0.04: "crashed",
        0.05: "error",
        0.06: "error",
        0.07: "crashed",
        0.1: "ok",
        0.2: "ok",
    }
    exp = parse_experiment(
        {
            "name": "faults",
            "data": {"dataset": "digits", "n_samples": 8},
            "time_limit_s": 3,
            "models": [{"recipe": "digits_mlp", "framework": "torch"}],
            "libraries": ["faulty:FaultyAdapter"],
            "attacks": [{"attack": "fgsm", "eps": e} for e in eps],
        }
    )
    res = run_experiment(exp, out_dir=tmp_path / "faults", backend="pool", workers=2)
    got = dict(zip(res.summary["eps"], res.summary["status"], strict=True))
    assert got == eps
    reasons = dict(zip(res.summary["eps"], res.summary["reason"], strict=True))
    assert "injected failure" in reasons[0.01]
    assert "NaN" in reasons[0.02]
    assert "time limit of 3 s" in reasons[0.03]
    assert "SIGKILL" in reasons[0.04]
    # BaseExceptions raised by library code are that cell's row, not the end of the run
    assert reasons[0.05].startswith("SystemExit(4) (sys.exit called inside the attack)")
    assert reasons[0.06].startswith("KeyboardInterrupt raised inside the attack (not a Ctrl-C)")
    assert "exit code 3" in reasons[0.07]
    assert res.summary.loc[res.summary["eps"] == 0.1, "success_rate"].notna().all()
    logs = tmp_path / "faults" / "logs"  # workers' output goes to the run, not the terminal
    assert list(logs.glob("worker-*.log")) and (logs / "run.log").is_file()
    assert "faults: 9 cells, 9 to run on pool" in (logs / "run.log").read_text()
    # --retry-failed runs exactly the failed cells again; nothing else
    again = run_experiment(exp, out_dir=tmp_path / "faults", backend="pool", workers=2, retry_failed=True)
    assert again.manifest["cells_run_now"] == 7


def _cli(args: list[str], **kw: Any) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "advharness", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        **kw,
    )


def test_sigkill_mid_run_then_resume_gives_the_same_table(tmp_path: Path) -> None:
    import yaml

    from advharness.reporting.results import read_results

    spec = small_grid(
        "resume",
        attacks=[
            {"attack": "pgd", "eps": e, "steps": 30, "step_size": 0.01, "random_start": True}
            for e in (0.05, 0.1, 0.15, 0.2)
        ],
    )
    path = tmp_path / "resume.yaml"
    path.write_text(yaml.safe_dump(spec))
    killed = tmp_path / "killed"
    proc = _cli(["run", str(path), "--out", str(killed), "--workers", "2", "--no-progress"])
    cells = killed / "cells"

    def finished() -> int:  # not the hidden temporary files a write in progress leaves
        return sum(not p.name.startswith(".") for p in cells.glob("*.json"))

    deadline = time.monotonic() + 240
    while finished() < 4 and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its workers, at once
    proc.wait()
    stored = finished()
    assert 4 <= stored < 24, stored
    assert not (killed / "summary.parquet").exists()
    assert (
        _cli(["run", str(path), "--out", str(killed), "--workers", "2", "--no-progress"]).wait(timeout=600)
        == 0
    )
    assert (
        _cli(["run", str(path), "--out", str(tmp_path / "whole"), "--workers", "2", "--no-progress"]).wait(
            timeout=600
        )
        == 0
    )
    resumed, whole = read_results(killed), read_results(tmp_path / "whole")
    assert resumed.manifest["cells_run_now"] == 24 - stored
    pd.testing.assert_frame_equal(comparable(resumed.summary), comparable(whole.summary))
    pd.testing.assert_frame_equal(resumed.records, whole.records)


def test_dry_run_lists_cells_with_overrides_and_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(small_grid("dry")))
    out = tmp_path / "dry"
    assert (
        main(
            [
                "run",
                str(path),
                "--out",
                str(out),
                "--dry-run",
                "attacks.pgd.steps=7",
                "seed=0",
                "seeds=[0,1]",
                "libraries=[art,foolbox]",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "16 cells, 16 to run on backend 'pool' (dry run: nothing ran)" in text
    assert not out.exists()
    assert main(["run", str(path), "--dry-run", "attacks.zzz.steps=7"]) == 2
    assert "no attack 'zzz'" in capsys.readouterr().err
