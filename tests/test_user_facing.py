"""What a user keeps and is told: evidence of failed cells, adversarial examples, the
manifest, file modes, the CLI wrapper and its verbose flag, grids in the API, models left as
they were, layout messages (the quiet terminal: test_terminal.py)."""

from __future__ import annotations

import os
import shlex
import stat
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from conftest import small_experiment

from advharness.core.atomic import atomic_write
from advharness.reporting.store import CellStore

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_result_files_follow_the_umask(tmp_path: Path, umask_022: None) -> None:
    atomic_write(tmp_path / "a.json", lambda p: p.write_text("{}"))
    store = CellStore(tmp_path)
    store.write("k", {"status": "ok"}, pd.DataFrame({"sample": [0]}))
    assert mode(tmp_path / "a.json") == 0o644
    assert {mode(p) for p in store.dir.iterdir()} == {0o644}
    os.umask(0o077)
    atomic_write(tmp_path / "b.json", lambda p: p.write_text("{}"))
    assert mode(tmp_path / "b.json") == 0o600


FAKE_PYTHON = """#!/bin/bash
# stands in for python3 -m venv DIR: a venv whose advharness reports its cwd and arguments
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  mkdir -p "$3/bin"
  printf '#!/bin/bash\\nexit 0\\n' > "$3/bin/pip"
  printf '#!/bin/bash\\necho "cwd=$PWD"; echo "python $*"\\n' > "$3/bin/python"
  printf '#!/bin/bash\\necho "cwd=$PWD"; echo "args $*"\\n' > "$3/bin/advharness"
  chmod +x "$3/bin/"*
fi
"""


def test_advh_keeps_the_callers_directory(tmp_path: Path) -> None:
    """``./advh`` run from elsewhere: the CLI sees the caller's directory, so relative paths
    resolve where the user typed them (the venv is still the repo's)."""
    import shutil
    import subprocess

    repo, elsewhere = tmp_path / "repo", tmp_path / "work"
    repo.mkdir()
    elsewhere.mkdir()
    for f in REPO.iterdir():  # the script and whatever it fingerprints (pyproject, locks)
        if f.is_file() and not f.name.startswith("."):
            shutil.copy2(f, repo / f.name)
    fake = tmp_path / "fakepython"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake)}
    run = subprocess.run(
        [str(repo / "advh"), "run", "exp.yaml"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"cwd={elsewhere}" in run.stdout.splitlines(), run.stdout + run.stderr
    assert "args run exp.yaml" in run.stdout
    assert (repo / ".venv" / "bin" / "advharness").is_file() and not (elsewhere / ".venv").exists()
    # the test suite too: the repo's tests and config, from the caller's directory
    test = subprocess.run(
        [str(repo / "advh"), "test"], cwd=elsewhere, env=env, capture_output=True, text=True, check=True
    )
    assert f"cwd={elsewhere}" in test.stdout.splitlines()
    assert f"python -m pytest --rootdir {repo} -c {repo}/pyproject.toml {repo}/tests" in test.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["-v", "run", "x.yaml"],
        ["run", "x.yaml", "-v"],
        ["run", "--verbose", "x.yaml", "a.b=1"],
        ["list", "-v"],
    ],
)
def test_verbose_before_or_after_the_subcommand(argv: list[str]) -> None:
    from advharness.cli import build_parser

    args = build_parser().parse_args(argv)
    assert args.verbose is True
    assert build_parser().parse_args([a for a in argv if a not in ("-v", "--verbose")]).verbose is False


def test_cli_accepts_verbose_after_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    from advharness.cli import main

    assert main(["list", "--attack", "fgsm", "-v"]) == 0
    assert "fgsm" in capsys.readouterr().out


def test_manifest_records_command_overrides_git_and_wall_time(tmp_path: Path) -> None:
    import json

    from advharness.cli import main
    from advharness.reporting.results import git_commit

    exp = small_experiment(tmp_path / "ux.yaml")
    argv = [
        "run",
        str(exp),
        "attacks.fgsm.eps=0.2",
        "--backend",
        "inline",
        "--no-progress",
        "--out",
        str(tmp_path / "out"),
    ]
    assert main(argv) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert shlex.split(manifest["command"]) == ["advharness", *argv]
    assert manifest["overrides"] == ["attacks.fgsm.eps=0.2"]
    assert manifest["experiment"]["attacks"][0]["eps"] == 0.2
    assert manifest["wall_time_s"] > 0
    assert manifest["git"] == git_commit()
    if (REPO / ".git").exists():
        assert len(manifest["git"]["commit"]) == 40 and isinstance(manifest["git"]["dirty"], bool)


def test_git_commit_of_a_checkout_and_of_a_plain_directory(tmp_path: Path) -> None:
    import subprocess

    from advharness.reporting.results import git_commit

    assert git_commit(tmp_path) is None  # not a checkout: None, no error
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    (repo / "f").write_text("1")
    for cmd in (["init", "-q"], ["add", "f"], ["commit", "-qm", "c"]):
        subprocess.run(["git", "-C", str(repo), *cmd], check=True, env=env)
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert git_commit(repo) == {"commit": head, "dirty": False}
    (repo / "f").write_text("2")
    assert git_commit(repo) == {"commit": head, "dirty": True}
    (repo / "sub").mkdir()
    assert git_commit(repo / "sub") is None  # inside a checkout, not its top level


BOOM = '''
import torch


class Boom(torch.nn.Module):
    """Answers the harness's own (no-grad) forward passes; fails when a gradient is taken."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(64, 10)

    def forward(self, x):
        if x.requires_grad:
            raise RuntimeError("boom in forward")
        return self.lin(x.flatten(1))


def make():
    torch.manual_seed(0)
    return Boom()
'''


def test_error_cells_keep_traceback_and_library_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from advharness.config.experiment import load_experiment
    from advharness.execution.orchestrate import run_experiment

    (tmp_path / "boom_factory.py").write_text(BOOM)
    monkeypatch.syspath_prepend(str(tmp_path))
    exp = load_experiment(
        small_experiment(
            tmp_path / "ux.yaml",
            libraries=["art"],
            models=[
                {
                    "factory": "boom_factory:make",
                    "framework": "torch",
                    "name": "boom",
                    "input_shape": [1, 8, 8],
                    "nb_classes": 10,
                }
            ],
        )
    )
    res = run_experiment(exp, out_dir=tmp_path / "out", backend="inline")
    row = res.summary.iloc[0]
    assert row["status"] == "error" and "boom in forward" in row["reason"]
    assert "Traceback" in row["traceback"] and "boom_factory.py" in row["traceback"]
    call = json.loads(row["library_call"])
    assert call["callable"] == "art.attacks.evasion.FastGradientMethod"
    assert call["kwargs"]["eps"] == 0.1
    stored = json.loads((tmp_path / "out" / "cells" / f"{row['cell_key']}.json").read_text())
    assert stored["traceback"] == row["traceback"] and stored["library_call"] == row["library_call"]
    log = (tmp_path / "out" / "logs" / "run.log").read_text()
    assert "boom in forward" in log and "Traceback" in log


def test_save_adversarials_stores_each_cell_and_the_api_returns_them(tmp_path: Path, umask_022: None) -> None:
    import numpy as np

    from advharness.config.experiment import load_experiment
    from advharness.execution.api import run_attacks
    from advharness.execution.orchestrate import run_experiment
    from advharness.reporting.results import read_adversarials

    exp = load_experiment(small_experiment(tmp_path / "ux.yaml", save_adversarials=True))
    res = run_experiment(exp, out_dir=tmp_path / "out", backend="inline")
    stored = read_adversarials(tmp_path / "out")
    assert sorted(stored) == sorted(res.summary["cell"])  # every (ok) cell
    for key in res.summary["cell_key"]:
        assert mode(tmp_path / "out" / "cells" / f"{key}.adv.npz") == 0o644
    model = res.summary.iloc[0]["model"]
    from advharness.zoo.recipes import load_recipe

    net = load_recipe("digits_mlp", "torch")
    for cell, x_adv in stored.items():
        rec = res.records[res.records["cell"] == cell].sort_values("sample")
        assert x_adv.shape == (8, 1, 8, 8) and x_adv.dtype == np.float32
        assert np.array_equal(net.predict(x_adv), rec["adv_pred"].to_numpy()), model
    # the same cells through the API, on request only
    from advharness.zoo.data import load_dataset

    ds = load_dataset("digits", "test", 8)
    api = run_attacks(
        [net], ds.x, ds.y, [{"attack": "fgsm", "eps": 0.1}], ["art", "foolbox"], return_adversarials=True
    )
    assert sorted(api.adversarials or {}) == [0, 1]
    for cell, x_adv in (api.adversarials or {}).items():
        rec = api.records[api.records["cell"] == cell].sort_values("sample")
        assert np.array_equal(net.predict(x_adv), rec["adv_pred"].to_numpy())
    assert run_attacks([net], ds.x, ds.y, [{"attack": "fgsm", "eps": 0.1}], ["art"]).adversarials is None


def test_save_adversarials_on_a_stored_run_fills_them_in(tmp_path: Path) -> None:
    from advharness.config.experiment import load_experiment
    from advharness.execution.orchestrate import run_experiment
    from advharness.reporting.results import read_adversarials

    path = small_experiment(tmp_path / "ux.yaml")
    first = run_experiment(load_experiment(path), out_dir=tmp_path / "out", backend="inline")
    assert read_adversarials(tmp_path / "out") == {}
    again = run_experiment(
        load_experiment(path, ["save_adversarials=true"]), out_dir=tmp_path / "out", backend="inline"
    )
    assert again.manifest["cells_run_now"] == len(first.summary)
    assert sorted(read_adversarials(tmp_path / "out")) == sorted(first.summary["cell"])


def test_run_attacks_expands_grids_like_experiment_files() -> None:
    from advharness.config.experiment import parse_experiment
    from advharness.core.errors import HarnessError
    from advharness.execution.api import resolve_specs, run_attacks
    from advharness.zoo.data import load_dataset
    from advharness.zoo.recipes import load_recipe

    grid = {"attack": "pgd", "eps": [0.05, 0.1], "steps": [2, 3], "step_size": 0.02, "params": {}}
    exp = parse_experiment(
        {"name": "g", "models": [{"recipe": "digits_mlp", "framework": "torch"}], "attacks": [grid]}
    )
    want = [a.resolve() for a in exp.attacks]
    assert len(want) == 4 and resolve_specs([grid]) == want
    ds = load_dataset("digits", "test", 4)
    res = run_attacks(
        [load_recipe("digits_mlp", "torch")],
        ds.x,
        ds.y,
        [grid, {"attack": "fgsm", "eps": [0.1, 0.1]}],
        ["foolbox"],
    )
    got = sorted(zip(res.summary["attack"], res.summary["eps"], strict=True))
    assert got == [("fgsm", 0.1), ("pgd", 0.05), ("pgd", 0.05), ("pgd", 0.1), ("pgd", 0.1)]
    assert set(res.summary["status"]) == {"ok"}
    with pytest.raises(HarnessError, match=r"attacks\[1\] \(grid values eps=-1.0\): eps: must be"):
        resolve_specs([{"attack": "fgsm", "eps": 0.1}, {"attack": "fgsm", "eps": [0.1, -1.0]}])
    with pytest.raises(HarnessError, match=r"attacks\[0\].eps: an empty grid"):
        resolve_specs([{"attack": "fgsm", "eps": []}])


def test_layout_errors_name_the_fix_in_the_users_shapes() -> None:
    import keras
    import numpy as np
    import torch

    from advharness.core.errors import HarnessError
    from advharness.execution.api import prepare
    from advharness.models.wrap import wrap_model

    x, y = np.zeros((4, 1, 8, 8), np.float32), np.zeros(4, np.int64)
    torch_net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    # a torch model declared with an HWC input_shape (layout defaults to NCHW)
    m = wrap_model(torch_net, input_shape=(8, 8, 1), nb_classes=10, name="t")
    with pytest.raises(HarnessError) as e:
        prepare(m, x, y)
    msg = str(e.value)
    assert "set layout: NHWC" in msg and "set input_shape: [1, 8, 8]" in msg
    assert "(4, 8, 8, 1)" not in msg and "(4, 1, 8, 8)" in msg  # only shapes the user passed
    # a model declared NHWC given an NCHW input_shape
    m = wrap_model(torch_net, input_shape=(1, 8, 8), nb_classes=10, layout="NHWC", name="t2")
    with pytest.raises(HarnessError, match=r"set layout: NCHW; .* set input_shape: \[8, 8, 1\]"):
        prepare(m, x, y)
    # a Keras model states its own input shape: the message says which layout it expects
    nhwc = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    for layout in (None, "NCHW"):
        with pytest.raises(
            HarnessError,
            match=r"the model expects NHWC: set input_shape: "
            r"\[8, 8, 1\] and layout: NHWC",
        ):
            wrap_model(nhwc, input_shape=(1, 8, 8), nb_classes=10, layout=layout, name="k")
    assert prepare(wrap_model(nhwc, input_shape=(8, 8, 1), nb_classes=10, name="k"), x, y)


def test_wrap_model_freezes_while_wrapped_and_release_restores() -> None:
    import keras
    import torch

    from advharness.models.wrap import wrap_model

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    net.train()
    net[1].bias.requires_grad_(False)  # the user's own choice, kept
    with wrap_model(net, input_shape=(1, 8, 8), nb_classes=10) as m:
        assert not net.training and not any(p.requires_grad for p in net.parameters())
        assert m.module is net  # type: ignore[attr-defined]
    assert net.training and net[1].weight.requires_grad and not net[1].bias.requires_grad
    k = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    m = wrap_model(k, input_shape=(8, 8, 1), nb_classes=10)
    assert k.trainable is False
    m.release()
    assert k.trainable is True
