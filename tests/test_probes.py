"""Model probes: zero gradients, randomness, batch-size dependence, softmax outputs, in torch
and TF; stored per model and data in a run, reused on resume, documented."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from advharness.models.probes import PROBES, probe_model

ROOT = Path(__file__).resolve().parent.parent


def flags(model: Any, x: np.ndarray, y: np.ndarray, batch_size: int = 8) -> dict[str, dict[str, Any]]:
    return {r["probe"]: r for r in probe_model(model, x, y, batch_size)}


@pytest.fixture(scope="module")
def batch() -> tuple[np.ndarray, np.ndarray]:
    from advharness.zoo.data import load_dataset

    ds = load_dataset("digits", n_samples=12)
    return ds.x, ds.y


def torch_wrap(*layers: Any, train_mode: bool = False) -> Any:
    import torch

    from advharness.models.torch_model import TorchModel

    torch.manual_seed(0)
    net = torch.nn.Sequential(*layers, torch.nn.Flatten(), torch.nn.Linear(64, 10))
    model = TorchModel(net, input_shape=(1, 8, 8), nb_classes=10, name="probe-torch")
    if train_mode:
        net.train()  # BatchNorm in training mode after wrapping: batch statistics
    return model


def torch_layer(fn: Any) -> Any:
    import torch

    class Layer(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            return fn(x)

    return Layer()


def test_a_normal_torch_model_is_quiet(batch: tuple[np.ndarray, np.ndarray]) -> None:
    model = torch_wrap()
    got = flags(model, *batch)
    assert list(got) == list(PROBES)
    assert not any(r["flagged"] for r in got.values()), got
    counts = model.counter.read()
    assert counts.forward == counts.backward == 0  # probes are not queries


def test_torch_gradient_masking_randomness_and_batch_norm_are_flagged(
    batch: tuple[np.ndarray, np.ndarray],
) -> None:
    import torch

    x, y = batch
    rounding = flags(torch_wrap(torch_layer(lambda t: torch.round(t * 4) / 4)), x, y)
    assert rounding["zero_gradients"]["flagged"] and rounding["zero_gradients"]["n_samples"] == len(x)
    assert rounding["zero_gradients"]["samples"] == list(range(len(x)))
    noisy = flags(torch_wrap(torch_layer(lambda t: t + 0.1 * torch.randn_like(t))), x, y)
    assert noisy["randomness"]["flagged"] and noisy["randomness"]["value"] > 1e-4
    assert not noisy["zero_gradients"]["flagged"]
    bn = torch_wrap(torch.nn.Flatten(), torch.nn.BatchNorm1d(64), train_mode=True)
    assert bn.module.training
    got = flags(bn, x, y)
    assert got["batch_size_dependence"]["flagged"] and got["batch_size_dependence"]["n_samples"] == len(x)
    assert "batch size 1 raised" in got["batch_size_dependence"]["detail"]  # 1 value per channel
    assert not got["randomness"]["flagged"]  # deterministic, only batch-dependent
    # runs at batch size 1, predicts otherwise: every input replaced by the batch's mean
    pooled = torch_wrap(torch_layer(lambda t: t.mean(dim=0, keepdim=True).expand_as(t)))
    got = flags(pooled, x, y)
    assert got["batch_size_dependence"]["flagged"] and not got["batch_size_dependence"]["detail"]


def test_softmax_output_declared_as_logits_are_flagged(batch: tuple[np.ndarray, np.ndarray]) -> None:
    import torch

    from advharness.models.torch_model import TorchModel

    x, y = batch
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10), torch.nn.Softmax(dim=1))
    got = flags(TorchModel(net, input_shape=(1, 8, 8), nb_classes=10), x, y)
    assert got["softmax_output"]["flagged"]
    declared = TorchModel(net, input_shape=(1, 8, 8), nb_classes=10, outputs="probabilities")
    assert not flags(declared, x, y)["softmax_output"]["flagged"]


def keras_wrap(*layers: Any) -> Any:
    import keras

    from advharness.models.tf_model import TFModel

    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((8, 8, 1)), *layers, keras.layers.Flatten(), keras.layers.Dense(10)])
    return TFModel(net, input_shape=(8, 8, 1), nb_classes=10, name="probe-tf")


def test_keras_probes(batch: tuple[np.ndarray, np.ndarray]) -> None:
    import keras
    import tensorflow as tf

    x, y = batch
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    assert not any(r["flagged"] for r in flags(keras_wrap(), nhwc, y).values())

    class Round(keras.layers.Layer):
        def call(self, t: Any) -> Any:
            return tf.round(t * 4) / 4

    class Noise(keras.layers.Layer):
        def call(self, t: Any) -> Any:
            return t + 0.1 * tf.random.normal(tf.shape(t))

    assert flags(keras_wrap(Round()), nhwc, y)["zero_gradients"]["n_samples"] == len(x)
    assert flags(keras_wrap(Noise()), nhwc, y)["randomness"]["flagged"]


def test_a_failing_gradient_is_flagged(batch: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = batch
    got = flags(torch_wrap(torch_layer(lambda t: t.detach())), x, y)  # no path to the input
    assert got["zero_gradients"]["flagged"]


def test_a_run_stores_probes_and_reuses_them(tmp_path: Path) -> None:
    from advharness import read_results, run_experiment
    from advharness.config.experiment import parse_experiment

    exp = parse_experiment(
        {
            "name": "probed",
            "data": {"dataset": "digits", "n_samples": 8},
            "models": [{"recipe": "digits_mlp", "framework": ["torch", "tensorflow"]}],
            "libraries": ["foolbox"],
            "attacks": [{"attack": "pgd", "eps": 0.1, "steps": 3, "step_size": 0.05}],
            "batch_size": 4,
            "save_traces": True,
            "save_adversarials": True,
        }
    )
    res = run_experiment(exp, tmp_path, backend="inline")
    files = sorted((tmp_path / "probed" / "probes").glob("*.json"))
    assert len(files) == 2
    assert len(res.probes) == 2 * len(PROBES) and not res.probes["flagged"].any()
    assert set(res.probes["batch_size"]) == {4}
    stamps = [f.stat().st_mtime_ns for f in files]
    again = run_experiment(exp, tmp_path, backend="inline")
    assert again.manifest["cells_run_now"] == 0
    assert [f.stat().st_mtime_ns for f in files] == stamps  # reused, not recomputed
    read = read_results(tmp_path / "probed")
    assert read.probes.drop(columns="samples").equals(res.probes.drop(columns="samples"))

    from advharness import read_adversarials, read_traces

    traces = read_traces(tmp_path / "probed")
    assert set(traces) == set(res.summary["cell"])
    for cell, t in traces.items():
        n_passes = res.records.loc[res.records["cell"] == cell, "loss_trace_length"].to_numpy()
        assert t["loss"].shape == (8, n_passes.max()) and (t["length"] == n_passes).all()
    seen = read_adversarials(tmp_path / "probed", seen=True)
    assert set(seen) == set(res.summary["cell"]) and all(a.shape[0] == 8 for a in seen.values())


def test_probe_and_path_columns_are_documented(batch: tuple[np.ndarray, np.ndarray]) -> None:
    from advharness import run_attacks
    from advharness.zoo.recipes import load_recipe

    text = (ROOT / "docs" / "results.md").read_text()
    part = text.split("## Probes\n", 1)[1].split("\n## ", 1)[0]
    documented = {
        n
        for line in part.splitlines()
        if line.startswith("| ") and not line.startswith("| column")
        for n in re.findall(r"`([^`]+)`", line.split(" | ")[0])
    }
    res = run_attacks([load_recipe("digits_mlp", "torch")], *batch, [{"attack": "fgsm", "eps": 0.1}], ["art"])
    assert set(res.probes.columns) - documented == set()
    assert set(PROBES) <= documented
