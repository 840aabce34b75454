"""The run stays in the user's hands: Ctrl-C stops it at once and says how to resume, a
killed run leaves no worker computing, and a second run on the same results waits its turn.

These drive the real CLI in a subprocess (its own session, like a terminal job) and use the
fault-injecting adapter in ``faulty.py``: eps 0.5 cells take 2 s, eps 0.03 cells hang.
The time bounds are correctness bounds for a loaded 2-core machine, far below what the
faults cost without the fixes (tens of seconds, or an hour), not benchmarks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def _experiment(tmp_path: Path, name: str, eps: list[float], seeds: int, **extra: Any) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "data": {"dataset": "digits", "n_samples": 4},
                "models": [{"recipe": "digits_mlp", "framework": "torch"}],
                "libraries": ["faulty:FaultyAdapter"],
                "seeds": list(range(seeds)),
                "attacks": [{"attack": "fgsm", "eps": e} for e in eps],
                **extra,
            }
        )
    )
    return path


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """The CLI in its own session; stdout and stderr to ``log``.out / ``log``.err (files, not
    pipes: a worker left behind would hold a pipe open)."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{TESTS}"}
    with open(f"{log}.out", "wb") as out, open(f"{log}.err", "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "advharness", *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )


def _finish(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> tuple[str, str]:
    """Wait for ``proc`` (killing its session past ``timeout``); its stdout and stderr."""
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return Path(f"{log}.out").read_text(), Path(f"{log}.err").read_text()


def _stored(out: Path) -> int:
    """Finished cells (not the hidden temporary file of a write in progress)."""
    return sum(not p.name.startswith(".") for p in (out / "cells").glob("*.json"))


def _wait_for_cells(proc: subprocess.Popen[bytes], out: Path, n: int) -> None:
    deadline = time.monotonic() + 300
    while _stored(out) < n:
        assert proc.poll() is None, "the run ended early"
        assert time.monotonic() < deadline, "no cells stored in time"
        time.sleep(0.05)


def _worker_pids(out: Path) -> list[int]:
    return [int(p.stem.removeprefix("worker-")) for p in (out / "logs").glob("worker-*.log")]


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return fields[0] != "Z"


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    """The pids still alive after ``seconds`` (then killed, so no test leaves them behind)."""
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in pids if _alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    return left


@pytest.mark.parametrize("backend", ["pool", "inline"])
def test_ctrl_c_stops_at_once_keeps_cells_and_says_how_to_resume(tmp_path: Path, backend: str) -> None:
    path = _experiment(tmp_path, "ctrlc", eps=[0.5], seeds=40)  # 40 cells of 2 s
    out = tmp_path / "ctrlc"
    args = ["run", str(path), "--out", str(out), "--backend", backend, "--workers", "2", "--no-progress"]
    proc = _start(args, tmp_path / "run")
    _wait_for_cells(proc, out, 2)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal sends on Ctrl-C: the whole job
    t0 = time.monotonic()
    _, err = _finish(proc, tmp_path / "run", timeout=60)
    took = time.monotonic() - t0
    assert took < 15, f"Ctrl-C took {took:.1f} s to stop the run"
    assert proc.returncode == 130
    stored = _stored(out)
    assert 2 <= stored < 40
    assert f"interrupted: {stored} of 40 cells stored in {out}" in err
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    resume = err.split("resume with: ", 1)[1].strip()
    assert resume.endswith(" ".join(args))
    assert _gone_within(_worker_pids(out), 5) == []
    # the printed command continues the same run: exactly the cells not stored are left
    cmd = resume.split()
    assert cmd[:3] == [sys.executable, "-m", "advharness"]
    text, _ = _finish(_start([*cmd[3:], "--dry-run"], tmp_path / "dry"), tmp_path / "dry", 300)
    assert f"40 cells, {40 - stored} to run" in text


def test_killing_only_the_main_process_leaves_no_worker_computing(tmp_path: Path) -> None:
    # per seed: a 2 s cell, then one that hangs for an hour; two workers
    path = _experiment(tmp_path, "orphans", eps=[0.5, 0.03], seeds=4)
    out = tmp_path / "orphans"
    proc = _start(["run", str(path), "--out", str(out), "--workers", "2", "--no-progress"], tmp_path / "run")
    _wait_for_cells(proc, out, 2)  # both workers are inside hanging cells by now
    time.sleep(1)
    workers = _worker_pids(out)
    assert len(workers) == 2 and all(_alive(p) for p in workers)
    os.kill(proc.pid, signal.SIGKILL)  # the main process only, as the OOM killer would
    proc.wait()
    assert _gone_within(workers, 10) == []


def test_a_second_run_on_the_same_results_is_refused_naming_the_first(tmp_path: Path) -> None:
    import pandas as pd

    from advharness.execution.runlock import run_lock

    path = _experiment(tmp_path, "twice", eps=[0.5], seeds=30)  # 30 cells of 2 s
    out = tmp_path / "twice"
    args = ["run", str(path), "--out", str(out), "--workers", "2", "--no-progress"]
    first = _start(args, tmp_path / "first")
    _wait_for_cells(first, out, 1)
    second = _start(args, tmp_path / "second")
    _, err = _finish(second, tmp_path / "second", timeout=300)
    assert first.poll() is None, "the first run should still be running"
    assert second.returncode == 2
    assert err.startswith(f"advharness: error: {out} is in use by another run (pid {first.pid} on ")
    assert len(err.strip().splitlines()) == 1, err
    _finish(first, tmp_path / "first", timeout=300)
    assert first.returncode == 0
    summary = pd.read_parquet(out / "summary.parquet")
    assert len(summary) == 30 and set(summary["status"]) == {"ok"}
    # every cell was computed once, by the first run's workers
    assert set(summary["worker_pid"]) <= set(_worker_pids(out))
    assert len(_worker_pids(out)) == 2
    with run_lock(out):  # the first run let go of it
        pass


def test_the_run_lock_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    from advharness.core.errors import HarnessError
    from advharness.execution.runlock import run_lock

    with run_lock(tmp_path):
        with pytest.raises(HarnessError, match=rf"in use by another run \(pid {os.getpid()} on "):
            with run_lock(tmp_path):
                pass
    with run_lock(tmp_path):  # released
        pass


def test_library_exits_are_rows_inline_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the user's own process (inline backend) a ``sys.exit`` or ``KeyboardInterrupt``
    raised by the attack is that cell's row: no SIGINT arrived, so it is not a Ctrl-C."""
    from advharness.config.experiment import parse_experiment
    from advharness.execution.orchestrate import run_experiment

    monkeypatch.syspath_prepend(str(TESTS))
    exp = parse_experiment(
        {
            "name": "inline-exits",
            "data": {"dataset": "digits", "n_samples": 4},
            "models": [{"recipe": "digits_mlp", "framework": "torch"}],
            "libraries": ["faulty:FaultyAdapter"],
            "attacks": [{"attack": "fgsm", "eps": e} for e in (0.05, 0.06, 0.1)],
        }
    )
    res = run_experiment(exp, out_dir=tmp_path / "out", backend="inline")
    assert res.summary["status"].tolist() == ["error", "error", "ok"]
    assert res.summary["reason"].str.contains("SystemExit\\(4\\)|KeyboardInterrupt").sum() == 2
