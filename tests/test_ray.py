"""A real two-node Ray cluster on loopback runs a grid; its table equals the process pool's."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from test_batch import comparable, small_grid

from advharness.config.experiment import parse_experiment
from advharness.execution.orchestrate import run_experiment

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray(*args: str, env: dict[str, str]) -> None:
    """``ray <args>`` with every node address kept on 127.0.0.1 (see ray_loopback.py)."""
    subprocess.run(
        [sys.executable, str(Path(__file__).with_name("ray_loopback.py")), *args],
        check=True,
        env=env,
        cwd=REPO,
        timeout=180,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A head node and a second worker node (one CPU each), both on 127.0.0.1 only.

    The auth mode is explicit for the nodes and this driver: Ray 2.60 turns token auth on for
    a head node when ``~/.ray/auth_token`` exists (any earlier local ``ray.init()`` writes
    one) but not for a joining node, which is then refused.
    """
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}",  # + faulty.py
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",
        "RAY_TMPDIR": str(tmp_path_factory.mktemp("ray")),
    }
    before = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # this process is the cluster's driver
    common = ["--num-cpus=1", "--object-store-memory=200000000", "--disable-usage-stats"]
    address = f"127.0.0.1:{port}"
    try:
        _ray("start", "--head", f"--port={port}", "--include-dashboard=false", *common, env=env)
        _ray("start", f"--address={address}", *common, env=env)
        yield address
    finally:
        _ray("stop", "--force", env=env)
        if before is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = before


def test_two_node_ray_cluster_table_equals_process_pool(cluster: str, tmp_path: Path) -> None:
    import ray

    exp = parse_experiment(small_grid("ray"))
    t0 = time.monotonic()
    on_ray = run_experiment(exp, out_dir=tmp_path / "ray", backend="ray", ray_address=cluster)
    assert time.monotonic() - t0 < 600
    assert not ray.is_initialized()  # the driver disconnected; the cluster keeps running
    ray.init(address=cluster, log_to_driver=False)
    try:
        nodes = [n for n in ray.nodes() if n["Alive"]]
    finally:
        ray.shutdown()
    assert len(nodes) == 2
    assert {n["NodeManagerAddress"] for n in nodes} == {"127.0.0.1"}  # loopback only
    pool = run_experiment(exp, out_dir=tmp_path / "pool", backend="pool", workers=2)
    assert set(on_ray.summary["status"]) == {"ok"}
    pd.testing.assert_frame_equal(comparable(on_ray.summary), comparable(pool.summary))
    pd.testing.assert_frame_equal(on_ray.records, pool.records)
    assert on_ray.manifest["backend"] == "ray"


def test_ray_fault_rows_carry_the_exit_code_or_signal(cluster: str, tmp_path: Path) -> None:
    """As on the pool: a cell that kills its process is a crashed row naming the signal or
    exit code; one past its time limit is a timeout row; the other cells finish."""
    eps = {0.03: "timeout", 0.04: "crashed", 0.07: "crashed", 0.1: "ok"}
    exp = parse_experiment(
        {
            "name": "ray-faults",
            "data": {"dataset": "digits", "n_samples": 8},
            "time_limit_s": 3,
            "models": [{"recipe": "digits_mlp", "framework": "torch"}],
            "libraries": ["faulty:FaultyAdapter"],
            "attacks": [{"attack": "fgsm", "eps": e} for e in eps],
        }
    )
    res = run_experiment(exp, out_dir=tmp_path / "faults", backend="ray", ray_address=cluster)
    assert dict(zip(res.summary["eps"], res.summary["status"], strict=True)) == eps
    reasons = dict(zip(res.summary["eps"], res.summary["reason"], strict=True))
    assert "killed by SIGKILL" in reasons[0.04]
    assert "exit code 3" in reasons[0.07]
    assert "time limit of 3 s" in reasons[0.03]
