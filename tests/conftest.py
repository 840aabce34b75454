"""Shared fixtures: small seeded models in both frameworks and image batches >= 28x28."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The recipes the suite trains are cached in the checkout (subprocesses inherit this), never in
# the user's own cache directory (the default, see advharness.zoo.recipes.default_cache_dir).
os.environ.setdefault(
    "ADVHARNESS_CACHE", str(Path(__file__).resolve().parent.parent / ".advh-cache" / "models")
)
# TensorFlow reads this once, at import: the suite runs under one stated oneDNN setting (TF's
# own default, on, unless the environment says otherwise) and test_onednn.py re-runs the tests
# marked ``numerics`` under the other one.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import numpy as np
import pytest

SHAPE_NCHW = (1, 28, 28)


def pytest_report_header() -> str:
    return f"TF_ENABLE_ONEDNN_OPTS={os.environ['TF_ENABLE_ONEDNN_OPTS']}"


@pytest.fixture(scope="session")
def image_batch() -> tuple[np.ndarray, np.ndarray]:
    """16 real MNIST test images (NCHW float32 in [0,1]) and their labels."""
    from advharness.zoo.data import load_dataset

    ds = load_dataset("mnist", n_samples=16, split="test")
    return ds.x, ds.y


def _torch_cnn(seed: int = 0):  # type: ignore[no-untyped-def]
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 5, stride=2),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 12 * 12, 10),
    )


def tiny_torch_model():  # type: ignore[no-untyped-def]
    """An untrained, seeded torch CNN wrapped for the harness (NCHW, 1x28x28, 10 classes)."""
    from advharness.models.torch_model import TorchModel

    return TorchModel(
        _torch_cnn(), input_shape=SHAPE_NCHW, nb_classes=10, bounds=(0.0, 1.0), name="tiny-torch"
    )


def tiny_tf_model():  # type: ignore[no-untyped-def]
    """An untrained, seeded Keras CNN wrapped for the harness (NHWC, 28x28x1, 10 classes)."""
    import keras

    from advharness.models.tf_model import TFModel

    keras.utils.set_random_seed(0)
    net = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(4, 5, strides=2, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    return TFModel(net, input_shape=(28, 28, 1), nb_classes=10, bounds=(0.0, 1.0), name="tiny-tf")


@pytest.fixture
def torch_model():  # type: ignore[no-untyped-def]
    """A fresh :func:`tiny_torch_model`."""
    return tiny_torch_model()


@pytest.fixture
def tf_model():  # type: ignore[no-untyped-def]
    """A fresh :func:`tiny_tf_model`."""
    return tiny_tf_model()


def to_layout(x_nchw: np.ndarray, layout: str) -> np.ndarray:
    """NCHW batch -> the model's layout (the harness's own conversion)."""
    from advharness.models.layout import from_nchw

    return from_nchw(x_nchw, layout)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """Tiny models on 2 shared cores: torch's thread pool only adds contention (~40x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def get_model(request: pytest.FixtureRequest) -> Callable[[str], Any]:
    """``get_model("torch" | "tensorflow")`` -> the matching tiny wrapped model fixture."""

    def get(fw: str) -> Any:
        return request.getfixturevalue({"torch": "torch_model", "tensorflow": "tf_model"}[fw])

    return get


def spy_constructor(monkeypatch: pytest.MonkeyPatch, module: Any, class_name: str) -> dict[str, Any]:
    """Replace ``module.<class_name>`` by a subclass recording its constructor kwargs."""
    seen: dict[str, Any] = {}
    base = getattr(module, class_name)

    def init(self: Any, **kwargs: Any) -> None:
        seen.update(kwargs)
        base.__init__(self, **kwargs)

    monkeypatch.setattr(module, class_name, type(class_name, (base,), {"__init__": init}))
    return seen


BASE_EXPERIMENT: dict[str, Any] = {
    "name": "g",
    "data": {"dataset": "digits", "n_samples": 8},
    "models": [{"recipe": "digits_mlp", "framework": "torch"}],
    "attacks": [{"attack": "fgsm", "eps": 0.1}],
}


def exp_dict(**changes: Any) -> dict[str, Any]:
    """A small valid experiment mapping with top-level ``changes``."""
    import copy

    return {**copy.deepcopy(BASE_EXPERIMENT), **changes}


def errors_of(data: dict[str, Any], overrides: tuple[str, ...] = ()) -> list[str]:
    """The located lines ``parse_experiment`` rejects ``data`` with (source ``exp.yaml``)."""
    from advharness.config.experiment import parse_experiment
    from advharness.core.errors import HarnessError

    with pytest.raises(HarnessError) as e:
        parse_experiment(data, "exp.yaml", overrides)
    lines = str(e.value).splitlines()
    assert all(line.startswith("exp.yaml: ") for line in lines), lines
    return [line.removeprefix("exp.yaml: ") for line in lines]


def small_experiment(path: Path, **extra: object) -> Path:
    """A small experiment file (digits MLP, ART and Foolbox, FGSM) at ``path``."""
    import yaml

    exp = {
        "name": "ux",
        "data": {"dataset": "digits", "n_samples": 8},
        "models": [{"recipe": "digits_mlp", "framework": "torch"}],
        "libraries": ["art", "foolbox"],
        "attacks": [{"attack": "fgsm", "eps": 0.1}],
        **extra,
    }
    path.write_text(yaml.safe_dump(exp))
    return path
