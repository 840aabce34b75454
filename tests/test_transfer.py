"""Transfer cells (crafted on a source model, judged on the target) and substitute models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from advharness.config.experiment import parse_experiment
from advharness.core.errors import HarnessError
from advharness.execution.api import run_attacks
from advharness.execution.orchestrate import run_experiment
from advharness.models.base import WrappedModel
from advharness.models.layout import from_nchw

LIBS = ("art", "foolbox", "cleverhans")


def _twins() -> tuple[WrappedModel, WrappedModel]:
    """A torch and a Keras linear classifier on 1x28x28 images with identical weights
    (with one channel, NCHW and NHWC flatten the pixels in the same order)."""
    import keras
    import tensorflow as tf
    import torch

    from advharness.models.tf_model import TFModel
    from advharness.models.torch_model import TorchModel

    torch.manual_seed(0)
    lin = torch.nn.Linear(28 * 28, 10)
    net_t = torch.nn.Sequential(torch.nn.Flatten(), lin)
    net_k = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Reshape((28 * 28,)), keras.layers.Dense(10)]
    )
    net_k.layers[-1].set_weights([lin.weight.detach().numpy().T.copy(), lin.bias.detach().numpy().copy()])
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    ref = net_t(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(net_k(tf.constant(from_nchw(x, "NHWC"))).numpy(), ref, rtol=1e-4, atol=1e-4)
    return (
        TorchModel(net_t, input_shape=(1, 28, 28), nb_classes=10, name="twin-torch"),
        TFModel(net_k, input_shape=(28, 28, 1), nb_classes=10, name="twin-tf"),
    )


@pytest.mark.numerics
def test_transfer_between_identical_twins_equals_white_box(
    image_batch: tuple[np.ndarray, np.ndarray],
) -> None:
    """Same weights in both frameworks: a transferred FGSM is the target's own white-box FGSM,
    so the layout conversion and the refereeing on the target must reproduce it.

    Torch and Keras compute the twins' logits and gradients with different kernels (1e-4
    apart, checked in ``_twins``), so a sample whose FGSM point lies within rounding of a
    decision boundary may go either way: success rates may differ by one sample of 16,
    stated below, never more. The source's rate is the same computation as the source's
    white-box cell (same model, kernels, batch and seed), so it is compared exactly.
    Marked ``numerics``: the suite also runs it under the other oneDNN setting."""
    x, _ = image_batch
    twin_t, twin_k = _twins()
    y = twin_t.predict(x)  # all samples correct on both twins
    attacks: list[dict[str, Any]] = [
        {"attack": "fgsm", "eps": 0.05},
        {"attack": "fgsm", "eps": 0.05, "source": "twin-torch"},
        {"attack": "fgsm", "eps": 0.05, "source": "twin-tf"},
    ]
    res = run_attacks([twin_t, twin_k], x, y, attacks, LIBS)
    s = res.summary
    assert set(s["status"]) == {"ok"}, s[["library", "status", "reason"]]
    transfer = s[s["threat_model"] == "transfer"]
    # one row per library per target: torch->tf and tf->torch
    assert sorted(zip(transfer["source_model"], transfer["model"], strict=True)) == sorted(
        [("twin-torch", "twin-tf"), ("twin-tf", "twin-torch")] * len(LIBS)
    )
    assert np.all(transfer["n_eps_violations"] == 0)
    assert np.all(transfer["queries_per_sample"] == 0)  # the target answers no query
    assert np.all(transfer["source_queries_per_sample"] >= 1)
    table = res.table()
    assert "transfer" in table.index.get_level_values("threat_model")
    assert set(table.index.get_level_values("source_model")) == {"-", "twin-torch", "twin-tf"}
    white = s[s["threat_model"] == "white-box"].set_index(["library", "model"])
    for _, row in transfer.iterrows():
        own = white.loc[(row["library"], row["model"])]
        assert row["success_rate"] > 0
        assert row["success_rate"] == pytest.approx(own["success_rate"], abs=1 / len(x) + 1e-9)
        assert row["source_success_rate"] == pytest.approx(
            white.loc[(row["library"], row["source_model"])]["success_rate"]
        )
        assert pd.isna(row["substitute_queries"])  # an independent source, not a substitute


def test_transfer_specs_are_validated(
    torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    from pydantic import ValidationError

    from advharness.config.spec import AttackSpec

    x, y = image_batch
    with pytest.raises(HarnessError, match="model 'nope' is not one of the models"):
        run_attacks([torch_model], x[:2], y[:2], [{"attack": "fgsm", "eps": 0.1, "source": "nope"}])
    with pytest.raises(ValidationError, match="crafts white-box on its source"):
        AttackSpec(attack="square", eps=0.1, source="m")


def test_transfer_refuses_different_input_sizes(torch_model: WrappedModel) -> None:
    import torch

    from advharness.models.layout import convert
    from advharness.models.torch_model import TorchModel

    small = TorchModel(
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)),
        input_shape=(1, 8, 8),
        nb_classes=10,
        name="small",
    )
    with pytest.raises(HarnessError, match="input shapes"):
        convert(np.zeros((1, 1, 28, 28), np.float32), torch_model, small)


@pytest.mark.parametrize(
    ("target_fw", "substitute_fw"),
    [("tensorflow", "torch"), ("torch", "tensorflow")],
    ids=["keras-target-torch-substitute", "torch-target-keras-substitute"],
)
def test_substitute_transfer_experiment(target_fw: str, substitute_fw: str, tmp_path: Path) -> None:
    """End to end: a substitute trained from the target's labels, then FGSM transferred."""
    exp = parse_experiment(
        {
            "name": "subst",
            "data": {"dataset": "digits", "n_samples": 40},
            "models": [
                {"recipe": "digits_cnn", "framework": target_fw},
                {
                    "recipe": "digits_cnn",
                    "framework": substitute_fw,
                    "queries": 600,
                    "substitute_of": f"digits_cnn-{target_fw}",
                },
            ],
            "libraries": ["art", "cleverhans"],
            "attacks": [
                {
                    "attack": "fgsm",
                    "eps": 0.3,
                    "source": f"substitute-digits_cnn-{substitute_fw}-of-digits_cnn-{target_fw}",
                }
            ],
        }
    )
    res = run_experiment(exp, out_dir=tmp_path / "subst", backend="inline")
    s = res.summary
    assert list(s["status"]) == ["ok", "ok"]
    assert set(s["model"]) == {f"digits_cnn-{target_fw}"}
    assert set(s["substitute_queries"]) == {600}
    assert set(s["substitute_access"]) == {"decision-based"}
    # transfer works (far above zero) but is weaker than the white-box attack on the source
    assert np.all(s["success_rate"] > 0.2)
    assert np.all(s["success_rate"] <= s["source_success_rate"] + 1e-9)
    info = res.manifest["models"][1]["substitute"]
    assert info["queries_spent"] == 600 and info["target"] == f"digits_cnn-{target_fw}"
    assert "train" in info["pool"] and info["agreement"] > 0.7


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (
            {"attacks": [{"attack": "fgsm", "eps": 0.1, "source": "ghost"}]},
            "attacks[0].source: 'ghost' is not one of the models",
        ),
        (
            {
                "models": [
                    {"recipe": "digits_cnn", "framework": "torch"},
                    {
                        "recipe": "digits_cnn",
                        "framework": "torch",
                        "name": "s",
                        "substitute_of": "ghost",
                        "queries": 10,
                    },
                ]
            },
            "models[1].substitute_of: 'ghost' is not one of the recipe models",
        ),
        (
            {"models": [{"recipe": "digits_cnn", "framework": "torch", "queries": 10}]},
            "queries is only for substitute models",
        ),
        (
            {
                "models": [
                    {"recipe": "digits_cnn", "framework": "torch"},
                    {
                        "recipe": "digits_cnn",
                        "framework": "torch",
                        "name": "s",
                        "substitute_of": "digits_cnn-torch",
                    },
                ]
            },
            "a substitute model needs queries",
        ),
    ],
    ids=[
        "unknown-source",
        "unknown-substitute-target",
        "queries-without-substitute",
        "substitute-without-queries",
    ],
)
def test_bad_transfer_experiments_get_located_messages(patch: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {
        "name": "e",
        "models": [{"recipe": "digits_cnn", "framework": "torch"}],
        "attacks": [{"attack": "fgsm", "eps": 0.1}],
    }
    with pytest.raises(HarnessError) as err:
        parse_experiment({**base, **patch})
    assert message in str(err.value)
