"""What a run checks before it starts and while it writes: experiment names that fit a
results directory, a results directory that can take the run, a disk filling up mid-run,
the CLI's one-line refusals, data on each model's own scale (and cells flagged when the
model gets its inputs wrong), and inputs too small for a library's attack."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import errors_of, exp_dict

from advharness.config.experiment import MAX_NAME_LENGTH, parse_experiment
from advharness.core.errors import HarnessError

REPO = Path(__file__).resolve().parent.parent
#: "Billion laughs": 9 levels of 9 aliases, ~600 bytes; fully expanded, 9**9 strings.
BOMB = (
    "name: bomb\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9))
    + "models: *a8\nattacks: [{attack: fgsm, eps: 0.1}]\n"
)
GOOD_YAML = "name: x\nmodels: [{recipe: digits_mlp, framework: torch}]\nattacks: [{attack: fgsm, eps: 0.1}]\n"


# -- item 4: names, results directories, full disks ------------------------------------------
def test_long_names_are_refused() -> None:
    assert errors_of(exp_dict(name="x" * 300)) == [
        f"name: at most {MAX_NAME_LENGTH} characters (it names the results directory), got 300"
    ]
    assert parse_experiment(exp_dict(name="x" * MAX_NAME_LENGTH)).name == "x" * MAX_NAME_LENGTH


def _no_models(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> None:
        raise AssertionError("models were built before the results directory was checked")

    monkeypatch.setattr("advharness.execution.orchestrate.build_models", refuse)


def test_results_directory_is_checked_before_models_are_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from advharness.execution.orchestrate import run_experiment

    _no_models(monkeypatch)
    exp = parse_experiment(exp_dict())
    (tmp_path / "file").write_text("")
    for out, needle in (
        (tmp_path / "file", "is not a directory"),
        (tmp_path / "file" / "run", f"is not a directory ({tmp_path / 'file'} is a file)"),
        (Path("/proc/advh-results"), "is not writable"),
    ):
        with pytest.raises(HarnessError) as e:
            run_experiment(exp, out_dir=out, backend="inline")
        assert str(e.value).startswith(f"results directory {out} ") and needle in str(e.value)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("advharness.execution.orchestrate.os.fsync", full)
    with pytest.raises(HarnessError) as e:
        run_experiment(exp, out_dir=tmp_path / "run", backend="inline")
    assert str(e.value) == (f"results directory {tmp_path / 'run'} is not writable (No space left on device)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # the probe left nothing


def test_a_disk_filling_up_mid_run_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from advharness.execution.orchestrate import run_experiment
    from advharness.reporting.store import CellStore

    write = CellStore.write
    calls = []

    def fills_up(self: CellStore, key: str, summary: Any, records: Any, *rest: Any) -> None:
        calls.append(key)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write(self, key, summary, records, *rest)

    monkeypatch.setattr(CellStore, "write", fills_up)
    exp = parse_experiment(
        exp_dict(libraries=["art", "foolbox"], attacks=[{"attack": "fgsm", "eps": [0.1, 0.2]}])
    )
    with pytest.raises(HarnessError) as e:
        run_experiment(exp, out_dir=tmp_path / "run", backend="inline")
    assert str(e.value) == (
        f"{tmp_path / 'run'}: cannot store cell 2 (No space left on "
        "device); 2 of 4 cells are stored; make room and run again to resume"
    )
    monkeypatch.setattr(CellStore, "write", write)
    again = run_experiment(exp, out_dir=tmp_path / "run", backend="inline")
    assert again.manifest["cells_run_now"] == 2


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}  # this checkout
    return subprocess.run(
        [sys.executable, "-m", "advharness", *args],
        cwd=cwd,
        text=True,
        capture_output=True,
        timeout=300,
        env=env,
    )


@pytest.mark.parametrize(
    ("body", "args", "needle"),
    [
        (BOMB.encode(), (), "YAML aliases (*a0) are not supported"),
        (GOOD_YAML.replace("name: x", "name: caf\xe9").encode("latin-1"), (), "not UTF-8 text"),
        (GOOD_YAML.replace("name: x", "name: " + "x" * 300).encode(), (), "name: at most 100"),
        (GOOD_YAML.encode(), ("--out", "exp.yaml"), "results directory exp.yaml is not a directory"),
    ],
    ids=["alias-bomb", "not-utf8", "long-name", "out-is-a-file"],
)
def test_cli_refuses_with_one_line(tmp_path: Path, body: bytes, args: tuple[str, ...], needle: str) -> None:
    (tmp_path / "exp.yaml").write_bytes(body)
    p = _cli("run", "exp.yaml", "--no-progress", *args, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("advharness: error:") and needle in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert sorted(q.name for q in tmp_path.iterdir()) == ["exp.yaml"]


# -- item 1: the data scale and a floor on clean accuracy ------------------------------------
SCALED_NET = '''\
import torch
from advharness.zoo.recipes import load_recipe


class Scale(torch.nn.Module):
    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def digits_255():
    """The digits MLP recipe behind a 1/255 rescaling: a model for pixels in [0, 255]."""
    return torch.nn.Sequential(Scale(1 / 255), load_recipe("digits_mlp", "torch").module)
'''


@pytest.fixture
def scaled_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    (tmp_path / "advh_scaled_net.py").write_text(SCALED_NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "advh_scaled_net", raising=False)
    return {
        "factory": "advh_scaled_net:digits_255",
        "framework": "torch",
        "name": "m255",
        "input_shape": [1, 8, 8],
        "nb_classes": 10,
        "bounds": [0, 255],
    }


def test_models_bounds_must_match_the_data_scale(scaled_factory: dict[str, Any]) -> None:
    models = [{"recipe": "digits_mlp", "framework": "torch"}, scaled_factory]
    assert errors_of(exp_dict(models=models)) == [
        "models[1].bounds: [0, 255] differs from data.scale [0, 1]: the model would get pixels "
        "in [0, 1]; set data.scale: [0, 255] (every model) or data.scale: model (each model "
        "its own bounds)"
    ]
    assert errors_of(exp_dict(models=models, data={"dataset": "digits", "scale": [0, 255]})) == [
        "models[0].bounds: [0, 1] differs from data.scale [0, 255]: the model would get pixels "
        "in [0, 255]; set data.scale: [0, 1] (every model) or data.scale: model (each model its "
        "own bounds)"
    ]
    assert errors_of(
        exp_dict(
            models=models,
            data={"dataset": "digits", "scale": "model"},
            attacks=[{"attack": "fgsm", "eps": 0.1, "source": "m255"}],
        )
    ) == [
        "attacks[0].source: 'm255' takes inputs in [0, 255], 'digits_mlp-torch' in other "
        "bounds: a transfer cell needs models of equal bounds"
    ]
    assert errors_of(exp_dict(data={"dataset": "digits", "scale": [1, 0]}))[0].startswith(
        "data.scale: must be [low, high] (finite, low < high) or 'model', got [1, 0]"
    )


def test_each_model_gets_the_data_on_its_own_bounds(tmp_path: Path, scaled_factory: dict[str, Any]) -> None:
    from advharness.execution.orchestrate import run_experiment

    exp = parse_experiment(
        exp_dict(
            data={"dataset": "digits", "n_samples": 16, "scale": "model"},
            libraries=["art"],
            models=[{"recipe": "digits_mlp", "framework": "torch"}, scaled_factory],
            attacks=[{"attack": "fgsm", "eps": 0.1}],
        )
    )
    s = run_experiment(exp, out_dir=tmp_path / "run", backend="inline").summary.set_index("model")
    # the same network, each given the digits on its own scale: both classify them well
    assert s["clean_accuracy"].min() >= 0.75 and not s["low_clean_accuracy"].any()


def test_cells_below_the_clean_accuracy_floor_are_flagged(
    tmp_path: Path, scaled_factory: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    from advharness.execution.orchestrate import run_experiment

    wrong = {**scaled_factory, "bounds": [0, 1]}  # expects [0, 255], declared [0, 1]
    exp = parse_experiment(
        exp_dict(
            data={"dataset": "digits", "n_samples": 16},
            libraries=["art"],
            models=[{"recipe": "digits_mlp", "framework": "torch"}, wrong],
            attacks=[{"attack": "fgsm", "eps": 0.1}],
        )
    )
    with caplog.at_level(logging.WARNING, logger="advharness.execution.orchestrate"):
        s = run_experiment(exp, out_dir=tmp_path / "run", backend="inline").summary
    s = s.set_index("model")
    assert s["clean_accuracy"].loc["m255"] < exp.clean_accuracy_floor
    assert s["low_clean_accuracy"].to_dict() == {"digits_mlp-torch": False, "m255": True}
    assert any(
        "model m255 classifies" in r.getMessage() and "low_clean_accuracy" in r.getMessage()
        for r in caplog.records
    )
    floor = parse_experiment(exp.model_dump(mode="json"), overrides=["clean_accuracy_floor=0"])
    again = run_experiment(floor, out_dir=tmp_path / "run", backend="inline")
    assert again.manifest["cells_run_now"] == 0  # the floor only changes the report
    assert not again.summary["low_clean_accuracy"].any()


# -- item 6: a library that cannot attack inputs this small says so --------------------------
@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_art_square_l2_on_8x8_images_is_an_unsupported_row(framework: str) -> None:
    from advharness.execution.api import run_attacks
    from advharness.zoo.data import load_dataset
    from advharness.zoo.recipes import load_recipe

    ds = load_dataset("digits", "test", 4)
    model = load_recipe("digits_cnn", framework)
    res = run_attacks(
        [model],
        ds.x,
        ds.y,
        [
            {"attack": "square", "norm": "l2", "eps": 1.0, "steps": 20},
            {"attack": "square", "norm": "linf", "eps": 0.1, "steps": 20},
        ],
        ["art"],
    )
    l2, linf = res.summary.to_dict("records")
    assert l2["status"] == "unsupported" and l2["reason"].startswith(
        "ART's L2 SquareAttack needs images at least 10 pixels high, these are 8: "
    )
    assert "0/0 = NaN, square_attack.py:287-292" in l2["reason"]
    assert linf["status"] == "ok" and linf["n_nonfinite"] == 0
