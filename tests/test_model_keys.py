"""Cells' content keys cover the built model's parameters: resume never reuses cells of a
model whose weights changed behind the experiment file (weights a factory loads by itself, a
changed helper module), and reuses them whenever the model is the same."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from advharness.config.experiment import parse_experiment
from advharness.execution.orchestrate import plan_table, run_experiment
from advharness.models.wrap import wrap_model

HELPER = "SCALE = {scale}\n"

FACTORIES = """\
import os

import advh_keys_helper


def torch_net():
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    path = os.environ.get("ADVH_KEYS_WEIGHTS")
    if path:  # the factory loads its own weights
        net.load_state_dict(torch.load(path, weights_only=True))
    with torch.no_grad():
        net[1].weight.mul_(advh_keys_helper.SCALE)
    return net


def keras_net():
    import keras

    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                            keras.layers.Dense(10)])
    path = os.environ.get("ADVH_KEYS_WEIGHTS")
    if path:
        net.load_weights(path)
    net.layers[-1].kernel.assign(net.layers[-1].kernel * advh_keys_helper.SCALE)
    return net
"""


@pytest.fixture
def zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Modules ``advh_keys_factories`` and ``advh_keys_helper`` on sys.path."""
    (tmp_path / "advh_keys_factories.py").write_text(FACTORIES)
    (tmp_path / "advh_keys_helper.py").write_text(HELPER.format(scale=1.0))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("ADVH_KEYS_WEIGHTS", raising=False)
    _forget_modules(monkeypatch)
    return tmp_path


def _forget_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """As a new process would: import the factory and helper modules afresh."""
    for name in ("advh_keys_factories", "advh_keys_helper"):
        monkeypatch.delitem(sys.modules, name, raising=False)


def _exp(framework: str) -> Any:
    return parse_experiment(
        {
            "name": "keys",
            "data": {"dataset": "digits", "n_samples": 6},
            "libraries": ["foolbox", "cleverhans"],
            "models": [
                {
                    "factory": "advh_keys_factories:"
                    + ("torch_net" if framework == "torch" else "keras_net"),
                    "framework": framework,
                    "name": "mine",
                    "input_shape": [1, 8, 8] if framework == "torch" else [8, 8, 1],
                    "nb_classes": 10,
                }
            ],
            "attacks": [{"attack": "fgsm", "eps": 0.2}],
        }
    )


def _save_other_weights(framework: str, path: Path) -> None:
    import advh_keys_factories as f

    if framework == "torch":
        import torch

        net = f.torch_net()
        torch.manual_seed(1)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        torch.save(net.state_dict(), path)
        return
    net = f.keras_net()
    rng = np.random.default_rng(1)
    net.set_weights([w + rng.normal(size=w.shape).astype(w.dtype) for w in net.get_weights()])
    net.save_weights(path)


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_weights_loaded_by_the_factory_change_the_keys(
    zoo: Path, monkeypatch: pytest.MonkeyPatch, framework: str
) -> None:
    exp, out = _exp(framework), zoo / "out"
    first = run_experiment(exp, out_dir=out, backend="inline")
    _forget_modules(monkeypatch)
    assert run_experiment(exp, out_dir=out, backend="inline").manifest["cells_run_now"] == 0
    weights = zoo / ("other.pt" if framework == "torch" else "other.weights.h5")
    _save_other_weights(framework, weights)
    monkeypatch.setenv("ADVH_KEYS_WEIGHTS", str(weights))  # same file, same factory source
    _forget_modules(monkeypatch)
    second = run_experiment(exp, out_dir=out, backend="inline")
    assert second.manifest["cells_run_now"] == 2
    assert set(second.summary["cell_key"]).isdisjoint(first.summary["cell_key"])
    assert not np.array_equal(second.records["adv_pred"], first.records["adv_pred"])


def test_changed_helper_module_changes_the_keys(zoo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exp, out = _exp("torch"), zoo / "out"
    first = run_experiment(exp, out_dir=out, backend="inline")
    (zoo / "advh_keys_helper.py").write_text(HELPER.format(scale=3.0))
    _forget_modules(monkeypatch)
    second = run_experiment(exp, out_dir=out, backend="inline")
    assert second.manifest["cells_run_now"] == 2
    assert set(second.summary["cell_key"]).isdisjoint(first.summary["cell_key"])


def test_dry_run_keys_are_the_run_keys(zoo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exp, out = _exp("torch"), zoo / "out"
    before = plan_table(exp, out_dir=out)
    assert before["will_run"].all() and set(before["stored"]) == {"-"}
    res = run_experiment(exp, out_dir=out, backend="inline")
    _forget_modules(monkeypatch)
    after = plan_table(exp, out_dir=out)
    assert after["key"].tolist() == before["key"].tolist() == res.summary["cell_key"].tolist()
    assert not after["will_run"].any() and set(after["stored"]) == {"ok"}


def test_dry_run_trains_nothing_and_marks_keys_it_cannot_know(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADVHARNESS_CACHE", str(tmp_path / "cache"))
    exp = parse_experiment(
        {
            "name": "untrained",
            "data": {"dataset": "digits", "n_samples": 4},
            "libraries": ["art"],
            "models": [{"recipe": "digits_mlp", "framework": "torch"}],
            "attacks": [{"attack": "fgsm", "eps": 0.1}],
        }
    )
    table = plan_table(exp, out_dir=tmp_path / "out")
    assert table[["key", "stored", "will_run"]].values.tolist() == [["?", "?", True]]
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


def test_parameter_hash_covers_parameters_and_buffers() -> None:
    import keras
    import torch

    def torch_model() -> Any:
        torch.manual_seed(0)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten(), torch.nn.Linear(72, 3)
        )
        return wrap_model(net, input_shape=(1, 8, 8), nb_classes=3)

    def keras_model() -> Any:
        keras.utils.set_random_seed(0)
        net = keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                keras.layers.BatchNormalization(),
                keras.layers.Flatten(),
                keras.layers.Dense(3),
            ]
        )
        return wrap_model(net, input_shape=(8, 8, 1), nb_classes=3)

    for make, tweaks in (
        (
            torch_model,
            (
                lambda m: m.module[3].bias.data.__setitem__(0, 1e-30),
                lambda m: m.module[1].running_mean.data.__setitem__(1, 0.5),
            ),
        ),
        (
            keras_model,
            (
                lambda m: m.model.layers[-1].bias.assign([1e-30, 0, 0]),
                lambda m: m.model.layers[0].moving_mean.assign([0.5]),
            ),
        ),
    ):
        reference = make().parameter_hash()
        assert make().parameter_hash() == reference  # the same network, built again
        for tweak in tweaks:  # a parameter, a buffer (non-trainable weight)
            m = make()
            tweak(m)
            assert m.parameter_hash() != reference
        other = make()
        other.bounds = (0.0, 255.0)  # the wrapping facts count too
        assert other.parameter_hash() != reference


def test_worker_refuses_a_model_other_than_the_planned_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unseeded factory builds another network in the worker than the one the keys were
    planned with: its cells are error rows saying so, not results of another model."""
    (tmp_path / "advh_keys_unseeded.py").write_text(
        "import torch\n\n\ndef make():\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "advh_keys_unseeded", raising=False)
    exp = parse_experiment(
        {
            "name": "unseeded",
            "data": {"dataset": "digits", "n_samples": 4},
            "libraries": ["foolbox"],
            "models": [
                {
                    "factory": "advh_keys_unseeded:make",
                    "framework": "torch",
                    "name": "drifting",
                    "input_shape": [1, 8, 8],
                    "nb_classes": 10,
                }
            ],
            "attacks": [{"attack": "fgsm", "eps": 0.1}],
        }
    )
    res = run_experiment(exp, out_dir=tmp_path / "out", backend="inline")
    assert res.summary["status"].tolist() == ["error"]
    assert res.summary["reason"][0].startswith(
        "model 'drifting' (or its source) built in this worker has other parameters"
    )
