"""The frameworks are extras (``[torch]``, ``[tensorflow]``, ``[ray]``, ``[all]``): the metadata
says so, the quick start and the lock still install and pin all of them, and with one of them
missing the harness imports, lists, and runs the other framework's cells, while the cells that
need the missing one are ``unsupported`` rows naming the extra to install.

A missing framework is simulated in a subprocess (and every process it spawns: pool workers,
the factory check) by a ``sitecustomize`` on ``PYTHONPATH`` that hides the package from the
import system exactly as an uninstalled one is hidden: ``importlib.util.find_spec`` returns
None (ART asks it) and ``import`` raises ``ModuleNotFoundError``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
FRAMEWORKS = ("torch", "tensorflow", "ray")

HIDE = """\
import os
import sys

HIDDEN = set(os.environ["ADVH_TEST_HIDE"].split(","))


class Hide:
    # wraps a finder: the hidden packages are not found (as if not installed)
    def __init__(self, inner):
        self.inner = inner

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            return None
        find = getattr(self.inner, "find_spec", None)
        return find(name, path, target) if find else None

    def __getattr__(self, attr):
        return getattr(self.inner, attr)


sys.meta_path[:] = [Hide(f) for f in sys.meta_path]
"""


def reason(framework: str) -> str:
    return f"{framework} is not installed: pip install 'advharness[{framework}]'"


def env_without(tmp_path: Path, framework: str) -> dict[str, str]:
    site = tmp_path / "hide"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(HIDE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    return {
        **env,
        "ADVH_TEST_HIDE": framework,
        "PYTHONPATH": os.pathsep.join([str(site), str(tmp_path), str(REPO)]),
        "ADVHARNESS_CACHE": str(REPO / ".advh-cache" / "models"),
    }


def advharness(env: dict[str, str], *args: str, cwd: Path, check: bool = True) -> Any:
    run = subprocess.run(
        [sys.executable, "-m", "advharness", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 or not check, run.stderr
    return run


# -- metadata -------------------------------------------------------------------------------
def test_frameworks_are_extras_and_all_is_the_three() -> None:
    def names(reqs: list[str]) -> set[str]:
        return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in reqs}

    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    assert not names(project["dependencies"]) & set(FRAMEWORKS)
    for fw in FRAMEWORKS:
        assert names(extras[fw]) == {fw}
    assert sorted(extras["all"]) == sorted(r for fw in FRAMEWORKS for r in extras[fw])
    assert project["requires-python"] == ">=3.11,<3.13"
    assert (REPO / "harness" / "py.typed").is_file()
    assert PYPROJECT["tool"]["setuptools"]["package-data"]["advharness"] == ["py.typed"]


def test_the_lock_pins_every_framework_within_its_extra() -> None:
    from packaging.requirements import Requirement

    lock = (REPO / "requirements.lock").read_text()
    advh = (REPO / "advh").read_text()
    assert "--extra all --extra dev" in advh  # how the lock is compiled
    for fw in FRAMEWORKS:
        pinned = re.search(rf"^{fw}==(\S+)$", lock, re.M)
        assert pinned, f"requirements.lock does not pin {fw}"
        (spec,) = PYPROJECT["project"]["optional-dependencies"][fw]
        assert Requirement(spec).specifier.contains(pinned.group(1), prereleases=True), (spec, pinned)


FAKE_PYTHON = """#!/bin/bash
# stands in for python3 -m venv DIR: a venv whose pip logs its arguments
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  mkdir -p "$3/bin"
  printf '#!/bin/bash\\necho "pip $*" >> "%s"\\n' "$PIP_LOG" > "$3/bin/pip"
  printf '#!/bin/bash\\nexit 0\\n' > "$3/bin/advharness"
  chmod +x "$3/bin/"*
  : > "$3/bin/python"; chmod +x "$3/bin/python"
fi
"""


def test_quick_start_installs_pinned_torch_first_then_every_extra(tmp_path: Path) -> None:
    import shutil

    repo = tmp_path / "repo"
    repo.mkdir()
    for f in REPO.iterdir():
        if f.is_file() and not f.name.startswith("."):
            shutil.copy2(f, repo / f.name)
    fake = tmp_path / "fakepython"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    log = tmp_path / "pip.log"
    env = {**os.environ, "PYTHON": str(fake), "PIP_LOG": str(log)}
    subprocess.run([str(repo / "advh"), "list"], env=env, capture_output=True, check=True, timeout=60)
    lock = f"-c {repo}/requirements.lock"
    first, second = log.read_text().splitlines()
    assert first.endswith(f"{lock} torch")  # the lock's CPU build, before anything can pull CUDA
    assert f"{lock} -e {repo}[all,dev]" in second


# -- one framework missing ----------------------------------------------------------------------
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_without_a_framework_the_package_imports_and_lists_what_is_missing(
    framework: str, tmp_path: Path
) -> None:
    env = env_without(tmp_path, framework)
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import importlib.util, advharness, advharness.adapters, advharness.cli\n"
            f"assert importlib.util.find_spec({framework!r}) is None\n"
            f"assert {framework!r} not in __import__('sys').modules\n"
            "print(advharness.support_matrix().shape[0] > 0)",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0 and probe.stdout.strip() == "True", probe.stderr
    assert "run" in advharness(env, "--help", cwd=tmp_path).stdout
    listed = advharness(env, "list", cwd=tmp_path).stdout
    assert reason(framework) in listed
    installed = next(line for line in listed.splitlines() if line.startswith("frameworks installed:"))
    assert framework not in installed
    assert all(fw in installed for fw in FRAMEWORKS if fw != framework)


FACTORY = """\
import torch


def make():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
"""


def experiment(tmp_path: Path, factory: bool) -> Path:
    """Both frameworks' digits MLPs, a TensorFlow substitute of the torch MLP, a torch ->
    TensorFlow transfer attack, and (``factory``) a torch factory model whose module imports
    torch."""
    (tmp_path / "advh_torch_factory.py").write_text(FACTORY)
    exp: dict[str, Any] = {
        "name": "extras",
        "data": {"dataset": "digits", "n_samples": 8},
        "models": [
            {"recipe": "digits_mlp", "framework": "torch"},
            {"recipe": "digits_mlp", "framework": "tensorflow"},
            {
                "factory": "advh_torch_factory:make",
                "framework": "torch",
                "name": "torch-factory",
                "input_shape": [1, 8, 8],
                "nb_classes": 10,
            },
            {
                "recipe": "digits_mlp",
                "framework": "tensorflow",
                "substitute_of": "digits_mlp-torch",
                "queries": 64,
                "epochs": 1,
            },
        ],
        "libraries": ["art", "foolbox"],
        "attacks": [
            {"attack": "fgsm", "eps": 0.1},
            {
                "attack": "fgsm",
                "eps": 0.1,
                "source": "digits_mlp-torch",
                "target_models": ["digits_mlp-tensorflow"],
            },
        ],
    }
    if not factory:
        exp["models"] = [m for m in exp["models"] if "factory" not in m]
    path = tmp_path / "extras.yaml"
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return path


def needs_by_model(model: str, threat_model: str) -> set[str]:
    """The frameworks a cell of :func:`experiment` needs."""
    if model == "substitute-digits_mlp-tensorflow-of-digits_mlp-torch" or threat_model == "transfer":
        return {"torch", "tensorflow"}
    return {"tensorflow" if model == "digits_mlp-tensorflow" else "torch"}


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_without_a_framework_its_cells_are_unsupported_rows_and_the_others_run(
    framework: str, tmp_path: Path
) -> None:
    env = env_without(tmp_path, framework)
    exp = experiment(tmp_path, factory=framework == "torch")
    out = str(tmp_path / "out")
    run = advharness(
        env,
        "run",
        str(exp),
        "--backend",
        "inline",
        "--no-progress",
        "--out",
        out,
        cwd=tmp_path,
    )
    assert "Traceback" not in run.stderr, run.stderr
    assert f"{reason(framework)} (" in run.stderr  # one warning per model, with its cell count
    summary = pd.read_parquet(tmp_path / "out" / "summary.parquet")
    assert len(summary) == (10 if framework == "torch" else 8)  # models x 2 libraries, transfer x 2
    missing = summary[
        [
            framework in needs_by_model(m, t)
            for m, t in zip(summary["model"], summary["threat_model"], strict=True)
        ]
    ]
    others = summary.drop(missing.index)
    assert len(missing) == (8 if framework == "torch" else 6), summary[["model", "framework", "status"]]
    assert set(missing["status"]) == {"unsupported"}
    assert set(missing["reason"]) == {reason(framework)}
    assert set(others["status"]) == {"ok"}, others[["model", "library", "status", "reason"]]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["frameworks_missing"] == {framework: reason(framework)}


def test_dry_run_knows_the_keys_of_cells_without_their_framework(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In this process, TensorFlow declared missing: the plan builds the torch models only and
    the keys of the cells that need TensorFlow are known all the same (their models have no
    parameters to hash), so ``--dry-run`` shows them; a transfer cell's key also needs its
    target's parameters."""
    from advharness.config.experiment import load_experiment
    from advharness.core import frameworks
    from advharness.execution.orchestrate import plan_table

    available = frameworks.framework_available
    monkeypatch.setattr(
        frameworks, "framework_available", lambda name: name != "tensorflow" and available(name)
    )
    monkeypatch.setenv("ADVHARNESS_CACHE", str(REPO / ".advh-cache" / "models"))
    exp = load_experiment(experiment(tmp_path, factory=False))
    table = plan_table(exp, out_dir=tmp_path / "out")
    assert len(table) == 8
    needs = [needs_by_model(m, t) for m, t in zip(table["model"], table["threat_model"], strict=True)]
    blocked = table[["tensorflow" in n for n in needs]]
    assert len(blocked) == 6
    assert (blocked.loc[blocked["threat_model"] != "transfer", "key"] != "?").all(), blocked


def test_a_pool_worker_starts_without_torch(tmp_path: Path) -> None:
    """(The runs above are inline: a pool worker's start-up is checked here, cheaply.)"""
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from advharness.execution.worker import init_worker\n"
            f"init_worker({str(tmp_path / 'logs')!r}); assert 'torch' not in sys.modules",
        ],
        env=env_without(tmp_path, "torch"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    assert probe.returncode == 0, logs
    assert "Traceback" not in logs


def test_the_ray_backend_without_ray_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    env = env_without(tmp_path, "ray")
    exp = tmp_path / "ray.yaml"
    exp.write_text(
        "name: r\nmodels: [{recipe: digits_mlp, framework: torch}]\nattacks: [{attack: fgsm, eps: 0.1}]\n"
    )
    run = advharness(
        env, "run", str(exp), "--backend", "ray", "--out", str(tmp_path / "out"), cwd=tmp_path, check=False
    )
    assert run.returncode == 2
    assert run.stderr.strip() == "advharness: error: the Ray backend: " + reason("ray")
    assert not (tmp_path / "out").exists()  # refused before anything was built or written


def test_missing_framework_reasons_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from advharness.core.errors import HarnessError
    from advharness.core.frameworks import framework_available, missing_framework_reason, require_framework

    assert all(framework_available(fw) for fw in FRAMEWORKS)  # the suite runs with [all]
    assert missing_framework_reason("torch") is None
    monkeypatch.setitem(sys.modules, "ray", None)  # find_spec: not found
    assert not framework_available("ray")
    assert missing_framework_reason("ray") == reason("ray")
    with pytest.raises(HarnessError, match=re.escape("the Ray backend: " + reason("ray"))):
        require_framework("ray", "the Ray backend")


def test_building_a_model_without_its_framework_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from advharness.core import frameworks
    from advharness.core.errors import HarnessError
    from advharness.zoo.recipes import load_recipe

    monkeypatch.setattr(frameworks, "framework_available", lambda name: name != "torch")
    with pytest.raises(HarnessError) as e:
        load_recipe("digits_mlp", "torch")
    assert str(e.value) == "recipe 'digits_mlp' (torch): " + reason("torch")
