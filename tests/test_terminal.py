"""A quiet terminal: training on first use says so, and nothing else reaches it -
TensorFlow's native banner, absl's preamble, leaked-semaphore warnings, Ray's token notice
and the libraries' own verdicts go to the log."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import small_experiment

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def test_training_on_first_use_says_so_on_the_terminal(tmp_path: Path) -> None:
    import subprocess
    import sys

    exp = small_experiment(tmp_path / "ux.yaml")
    env = {**os.environ, "ADVHARNESS_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "advharness",
        "run",
        str(exp),
        "--backend",
        "inline",
        "--no-progress",
        "--out",
        str(tmp_path / "out"),
    ]
    first = subprocess.run([*cmd, "-v"], env=env, capture_output=True, text=True, check=True)
    lines = [s for s in first.stderr.splitlines() if "training recipe" in s]
    assert len(lines) == 1, first.stderr  # once, also with -v
    assert "training recipe digits_mlp (torch) on first use" in lines[0]
    assert "cached afterwards" in lines[0]
    (tmp_path / "cache").rename(tmp_path / "old")
    quiet = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    assert "training recipe digits_mlp (torch) on first use" in quiet.stderr  # default level


#: What must not reach the terminal: TensorFlow's native banner and cuInit error, absl's
#: preamble, multiprocessing's leaked-semaphore warning, Ray's token notice, ART's own verdict.
NOISE = (
    "absl",
    "I0000",
    "E0000",
    "W0000",
    "cuInit",
    "oneDNN",
    "cuda",
    "cpu_feature_guard",
    "leaked semaphore",
    "Token authentication",
    "Success rate of",
)


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "PYTHONWARNINGS"))}
    return {**env, "PYTHONPATH": str(REPO), "ADVHARNESS_CACHE": str(REPO / ".advh-cache" / "models")}


def noise(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(n in line for n in NOISE)]


def test_cli_run_is_quiet(tmp_path: Path) -> None:
    import subprocess
    import sys

    exp = small_experiment(
        tmp_path / "ux.yaml",
        libraries=["art"],
        models=[
            {"recipe": "digits_mlp", "framework": "torch"},
            {"recipe": "digits_mlp", "framework": "tensorflow"},
        ],
        attacks=[{"attack": "fgm", "eps": 0.0001}],
    )  # ART logs "Success rate ... 0.00%"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "advharness",
            "run",
            str(exp),
            "--workers",
            "2",
            "--out",
            str(tmp_path / "out"),
        ],
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "head-to-head" in run.stdout
    assert noise(run.stdout + run.stderr) == [], run.stderr
    logs = "".join(p.read_text() for p in (tmp_path / "out" / "logs").glob("*.log"))
    assert "Success rate of FGM attack" in logs  # kept, in the log files


API_SCRIPT = """
from advharness import load_dataset, load_recipe, run_attacks
ds = load_dataset("digits", "test", 8)
models = [load_recipe("digits_mlp", fw) for fw in ("torch", "tensorflow")]
models[0].name, models[1].name = "t", "k"
res = run_attacks(models, ds.x, ds.y, [{"attack": "fgm", "eps": 0.0001}],
                  ["art", "foolbox", "cleverhans"])
print("statuses", sorted(set(res.summary["status"])))
"""


def test_python_api_is_quiet(tmp_path: Path) -> None:
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-c", API_SCRIPT],
        env=clean_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "statuses ['ok']" in run.stdout
    assert noise(run.stdout + run.stderr) == [], run.stderr


LEAK_SCRIPT = """
import multiprocessing, os
from advharness.core.quiet import quiet_resource_tracker
quiet_resource_tracker()  # what PoolBackend.run does first
lock = multiprocessing.get_context("spawn").Lock()  # registered with the tracker
os._exit(0)  # as if killed: the tracker finds the semaphore at shutdown
"""


def test_interrupted_pool_leaves_no_leaked_semaphore_warning(tmp_path: Path) -> None:
    import inspect
    import subprocess
    import sys

    from advharness.execution.backends import PoolBackend

    assert "quiet_resource_tracker()" in inspect.getsource(PoolBackend.run)
    run = subprocess.run(
        [sys.executable, "-c", LEAK_SCRIPT],
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "leaked semaphore" not in run.stderr, run.stderr
    assert "PYTHONWARNINGS" not in os.environ


def test_ray_token_notice_goes_to_the_log(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from advharness.core.quiet import RAY_TOKEN_NOTICE, ray_notices_to_log

    ray_log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    with caplog.at_level(logging.INFO), ray_notices_to_log():
        ray_log.warning(RAY_TOKEN_NOTICE + ". Set RAY_AUTH_MODE=disabled to opt out.")
        ray_log.warning("something else")
    assert [(r.name, r.levelname) for r in caplog.records] == [
        ("advharness.core.quiet", "INFO"),
        ("ray._private.authentication.authentication_token_setup", "WARNING"),
    ]
    assert not ray_log.filters


def test_native_log_lines_go_to_the_log_and_the_rest_to_the_terminal(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from advharness.core.quiet import native_logs_to_log

    native = "I0000 00:00:1796079073.626892    4856 port.cc:153] oneDNN custom operations are on."
    with caplog.at_level(logging.DEBUG, "advharness.core.quiet"), native_logs_to_log("lib"):
        os.write(2, f"{native}\nthe user's own line\n".encode())
    err = capfd.readouterr().err
    assert "the user's own line" in err and "oneDNN" not in err
    assert [r.getMessage() for r in caplog.records] == [f"lib: {native}"]
