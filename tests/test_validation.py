"""Bad input gets a one-line error naming the problem, and nothing half-written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from advharness.config.experiment import parse_experiment
from advharness.config.spec import AttackSpec
from advharness.core.errors import HarnessError
from advharness.execution.api import run_attacks

GOOD = {
    "name": "t",
    "data": {"dataset": "digits", "n_samples": 4},
    "models": [{"recipe": "digits_mlp", "framework": "torch"}],
    "attacks": [{"attack": "fgsm", "eps": 0.1}],
}


def _exp(**changes: object) -> dict:
    return {**GOOD, **changes}


@pytest.mark.parametrize(
    "bad,needle",
    [
        (
            _exp(attacks=[{"attack": "fgsm", "eps": 0.1}, {"attack": "nope", "eps": 1}]),
            "attacks[1]: unknown attack 'nope'",
        ),
        (_exp(attacks=[{"attack": "pgd", "eps": -0.1}]), "attacks[0].eps: must be >= 0"),
        (_exp(attacks=[{"attack": "pgd"}]), "eps is required"),
        (_exp(attacks=[{"attack": "pgd", "eps": 0.1, "norm": "l0"}]), "not 'l0'"),
        (_exp(attacks=[{"attack": "pgd", "eps": 0.1, "restarts": 3}]), "needs random_start"),
        (_exp(attacks=[{"attack": "cw", "params": {"kappa": 1}}]), "unknown params ['kappa']"),
        (
            _exp(attacks=[{"attack": "cw", "library_options": {"torchattacks": {}}}]),
            "unknown libraries ['torchattacks']",
        ),
        (_exp(libraries=["art", "advertorch"]), "libraries: unknown library 'advertorch'"),
        (_exp(models=[{"recipe": "resnet", "framework": "torch"}]), "models[0].recipe: unknown recipe"),
        (_exp(models=[{"recipe": "digits_mlp", "framework": "jax"}]), "models[0].framework"),
        (_exp(data={"dataset": "cifar"}), "data.dataset"),
        (_exp(name="../evil"), "name: must be letters"),
        (_exp(colour="red"), "colour: Extra inputs are not permitted"),
    ],
    ids=[
        "unknown-attack",
        "negative-eps",
        "missing-eps",
        "bad-norm",
        "restarts-no-random",
        "unknown-param",
        "unknown-library-option",
        "unknown-library",
        "unknown-recipe",
        "unknown-framework",
        "unknown-dataset",
        "unsafe-name",
        "unknown-key",
    ],
)
def test_experiment_errors_are_located(bad: dict, needle: str) -> None:
    with pytest.raises(HarnessError) as e:
        parse_experiment(bad)
    assert needle in str(e.value)


@pytest.mark.parametrize(
    "bad,overrides,expected",
    [
        (
            _exp(attacks=[{"attack": "fgsm", "eps": 0.1}] * 3 + [{"attack": "pgd", "eps": [0.1, -1.0]}]),
            (),
            ["src: attacks[3].eps: must be >= 0 (grid value -1.0)"],
        ),
        (
            _exp(attacks=[{"attack": "fgsm", "eps": 0.1}, {"attack": "pgd"}, {"attack": "pgd", "eps": []}]),
            (),
            [
                "src: attacks[1]: pgd is a fixed-budget attack: eps is required",
                "src: attacks[2].eps: an empty grid",
            ],
        ),
        (
            _exp(
                models=[
                    {"recipe": "digits_mlp", "framework": "torch"},
                    {
                        "factory": "advh_no_such_pkg.mod:make",
                        "framework": "torch",
                        "name": "m",
                        "input_shape": [64],
                        "nb_classes": 10,
                    },
                ]
            ),
            (),
            [
                "src: models[1].factory: cannot import 'advh_no_such_pkg.mod': "
                "No module named 'advh_no_such_pkg'"
            ],
        ),
        (_exp(seed=1, seeds=[0, 1]), (), ["src: seeds: give seed or seeds, not both"]),
        (
            GOOD,
            ("attacks.zzz.steps=3", "data.n_samples=-1"),
            ["src: override 'attacks.zzz.steps=3': no attack 'zzz' in the experiment"],
        ),
        (
            GOOD,
            ("data.n_samples=0", "attacks.fgsm.eps=[0.1, .nan, .inf]"),
            [
                "src: data.n_samples: must be >= 1",
                "src: attacks[0].eps: must be a finite number (grid value nan)",
                "src: attacks[0].eps: must be a finite number (grid value inf)",
            ],
        ),
    ],
    ids=["grid-value", "empty-grid", "factory-import", "seed-and-seeds", "bad-override", "overridden-values"],
)
def test_grid_factory_and_override_errors_are_located(
    bad: dict, overrides: tuple[str, ...], expected: list[str]
) -> None:
    with pytest.raises(HarnessError) as e:
        parse_experiment(bad, "src", overrides)
    assert str(e.value).splitlines() == expected


def test_spec_resolution_is_explicit() -> None:
    r = AttackSpec(attack="pgd", eps=0.3, steps=40).resolve()
    assert r.norm == "linf" and r.step_size == pytest.approx(2.5 * 0.3 / 40)
    assert r.random_start is False and r.restarts == 1
    cw = AttackSpec(attack="cw").resolve()
    assert cw.params == {"c": 1.0, "confidence": 0.0, "learning_rate": 0.01, "binary_search_steps": 5}
    assert cw.steps == 100 and cw.eps is None
    assert AttackSpec(attack="fgsm", eps=0.2).resolve().step_size == 0.2


class _Linear:
    """A tiny numpy-free torch model factory for input checks."""

    @staticmethod
    def make(softmax: bool = False):  # type: ignore[no-untyped-def]
        import torch

        from advharness.models.torch_model import TorchModel

        torch.manual_seed(0)
        layers: list[torch.nn.Module] = [torch.nn.Flatten(), torch.nn.Linear(16, 3)]
        if softmax:
            layers.append(torch.nn.Softmax(dim=1))
        return TorchModel(torch.nn.Sequential(*layers), input_shape=(1, 4, 4), nb_classes=3, name="lin")


def _data(n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, (n, 1, 4, 4)).astype(np.float32), np.arange(n) % 3


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 3, np.nan, x), y), "NaN"),
        (lambda x, y: (x * 2.0, y), "outside its bounds [0, 1]"),
        (lambda x, y: (x.reshape(len(x), 1, 2, 8), y), "expects inputs of shape (N, 1, 4, 4)"),
        (lambda x, y: (x, y + 5), "labels out of range [0, 2]"),
        (lambda x, y: (x, y[:2]), "labels must have shape (4,)"),
        (lambda x, y: (x, y.astype(np.float32)), "labels must be integers"),
    ],
    ids=["nan", "out-of-bounds", "wrong-shape", "label-range", "label-count", "label-dtype"],
)
def test_bad_data_is_refused(mutate, needle: str) -> None:  # type: ignore[no-untyped-def]
    x, y = mutate(*_data())
    with pytest.raises(HarnessError) as e:
        run_attacks([_Linear.make()], x, y, [{"attack": "fgsm", "eps": 0.1}], ["foolbox"])
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_probabilities_model_is_refused_or_handled_explicitly() -> None:
    x, y = _data()
    with pytest.raises(HarnessError, match="outputs probabilities"):
        run_attacks([_Linear.make(softmax=True)], x, y, [{"attack": "fgsm", "eps": 0.1}], ["art"])
    m = _Linear.make(softmax=True)
    m.outputs = "probabilities"
    m.counted.probabilities = True
    res = run_attacks([m], x, y, [{"attack": "fgsm", "eps": 0.1}], ["cleverhans"])
    assert res.summary["status"].tolist() == ["ok"]


def test_unknown_library_in_api() -> None:
    x, y = _data()
    with pytest.raises(HarnessError, match="unknown library 'advertorch'"):
        run_attacks([_Linear.make()], x, y, [{"attack": "fgsm", "eps": 0.1}], ["advertorch"])


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "advharness", *args], cwd=cwd, text=True, capture_output=True, timeout=300
    )


@pytest.mark.parametrize(
    "body,needle",
    [
        (
            "name: x\nmodels: [{recipe: digits_mlp, framework: torch}]\nattacks: [{attack: fgsm, eps: -1}]\n",
            "attacks[0].eps: must be >= 0",
        ),
        (
            "name: x\nmodels: [{recipe: digits_mlp, framework: torch}]\nattacks: [{attack: lbfgs, eps: 1}]\n",
            "unknown attack 'lbfgs'",
        ),
        (
            "name: x\nlibraries: [art, nope]\nmodels: [{recipe: digits_mlp, framework: torch}]\n"
            "attacks: [{attack: fgsm, eps: 1}]\n",
            "unknown library 'nope'",
        ),
        (
            "name: x\ndata: {dataset: mnist, path: /nonexistent}\n"
            "models: [{recipe: mnist_cnn, framework: torch}]\nattacks: [{attack: fgsm, eps: 1}]\n",
            "no MNIST IDX files in /nonexistent",
        ),
        (
            "name: x\ndata: {dataset: digits, n_samples: 100000}\n"
            "models: [{recipe: digits_mlp, framework: torch}]\nattacks: [{attack: fgsm, eps: 1}]\n",
            "cannot take 100000",
        ),
        ("name: [unclosed\n", "not valid YAML"),
    ],
    ids=["negative-eps", "unknown-attack", "unknown-library", "missing-data", "too-many-samples", "bad-yaml"],
)
def test_cli_bad_input_one_line_no_results(tmp_path: Path, body: str, needle: str) -> None:
    (tmp_path / "exp.yaml").write_text(body)
    p = _cli("run", "exp.yaml", "--results-dir", "res", "--no-progress", cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and needle in p.stderr
    assert p.stderr.startswith("advharness: error:")
    assert not (tmp_path / "res").exists()


def test_cli_missing_file(tmp_path: Path) -> None:
    p = _cli("run", "nope.yaml", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.strip() == "advharness: error: experiment file not found: nope.yaml"
