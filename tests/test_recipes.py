"""Built-in recipes: training accuracy, caching, determinism, safe loading, user errors."""

from __future__ import annotations

import dataclasses
import gzip
import logging
import pickle
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from advharness.config.catalogue import RECIPES
from advharness.core.errors import HarnessError
from advharness.models.base import WrappedModel
from advharness.models.layout import from_nchw, to_layout
from advharness.zoo import recipes
from advharness.zoo.data import Dataset, load_dataset
from advharness.zoo.recipes import cache_paths, load_recipe, recipe_info

FRAMEWORKS = ("torch", "tensorflow")
DIGITS = ("digits_mlp", "digits_cnn")
Trainer = Callable[[str, str], WrappedModel]


def in_layout(model: WrappedModel, x: np.ndarray) -> np.ndarray:
    return to_layout(x, model)


def weights_of(model: WrappedModel) -> list[np.ndarray]:
    if model.framework == "torch":
        return [t.numpy() for t in model.module.state_dict().values()]  # type: ignore[attr-defined]
    return [np.asarray(w) for w in model.model.get_weights()]  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def digits_test() -> Dataset:
    return load_dataset("digits", "test")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def trained(cache: Path) -> Trainer:
    """Each (recipe, framework) trained once into the module's cache, on first use."""
    done: dict[tuple[str, str], WrappedModel] = {}

    def get(name: str, framework: str) -> WrappedModel:
        if (name, framework) not in done:
            done[name, framework] = load_recipe(name, framework, cache_dir=cache)
        return done[name, framework]

    return get


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("name", DIGITS)
def test_digits_recipes_train_accurately(
    trained: Trainer, digits_test: Dataset, name: str, framework: str
) -> None:
    """The stored test accuracy is recomputed with the same ``predict`` on the same array in
    the same process (same kernels), so it is compared exactly."""
    model = trained(name, framework)
    info: dict[str, Any] = model.recipe_info  # type: ignore[attr-defined]
    assert info["from_cache"] is False and info["test_accuracy"] >= 0.93
    x = in_layout(model, digits_test.x)
    assert info["test_accuracy"] == pytest.approx(np.mean(model.predict(x) == digits_test.y))
    assert model.name == f"{name}-{framework}" and model.framework == framework
    assert model.family == name
    assert (model.nb_classes, model.bounds, model.outputs) == (10, (0.0, 1.0), "logits")
    nhwc = framework == "tensorflow"
    assert model.layout == ("NHWC" if nhwc else "NCHW")
    assert model.input_shape == ((8, 8, 1) if nhwc else (1, 8, 8))
    model.check_outputs(x)  # logits, not probabilities
    assert info["hyperparameters"] == RECIPES[name].hyperparameters()
    assert info["n_train"] == 1348 and info["n_test"] == 449 and info["train_time_s"] > 0
    assert framework in info["versions"] and "numpy" in info["versions"]
    assert Path(info["weights_path"]).is_file()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_second_load_hits_cache(
    trained: Trainer, cache: Path, digits_test: Dataset, framework: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The cached weights are the trained ones, so their logits are bit-identical (same
    weights, same kernels in one process)."""
    first = trained("digits_mlp", framework)
    with caplog.at_level(logging.INFO, logger="advharness.zoo.recipes"):
        second = load_recipe("digits_mlp", framework, cache_dir=cache)
    assert not [r for r in caplog.records if "training" in r.getMessage()]
    info = second.recipe_info  # type: ignore[attr-defined]
    assert info["from_cache"] is True
    assert info == {**first.recipe_info, "from_cache": True}  # type: ignore[attr-defined]
    stored = recipe_info("digits_mlp", framework, cache_dir=cache)
    assert stored is not None and stored["trained_at"] == info["trained_at"]
    x = in_layout(first, digits_test.x)
    np.testing.assert_array_equal(first.predict_logits(x), second.predict_logits(x))


@pytest.mark.numerics
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_training_is_bit_deterministic(
    trained: Trainer, tmp_path: Path, digits_test: Dataset, framework: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Bit-identical by construction: the same process, seed, data order, thread count and
    deterministic-op flags run the same kernels, so equality is exact, not a tolerance.
    (Across CPUs or oneDNN settings the weights may differ; no test compares those.)
    Marked ``numerics``: the suite also runs it under the other oneDNN setting."""
    import torch
    from tensorflow.python.framework import config as tf_config

    first = trained("digits_mlp", framework)
    flags = torch.are_deterministic_algorithms_enabled(), tf_config.is_op_determinism_enabled()
    threads = torch.get_num_threads()
    with caplog.at_level(logging.INFO, logger="advharness.zoo.recipes"):
        again = load_recipe("digits_mlp", framework, cache_dir=tmp_path)
    assert [r for r in caplog.records if r.getMessage().startswith("trained digits_mlp")]
    assert again.recipe_info["from_cache"] is False  # type: ignore[attr-defined]
    for a, b in zip(weights_of(first), weights_of(again), strict=True):
        np.testing.assert_array_equal(a, b)
    x = in_layout(first, digits_test.x)
    np.testing.assert_array_equal(first.predict_logits(x), again.predict_logits(x))
    # training leaves the process's determinism flags and thread count as it found them
    assert flags == (torch.are_deterministic_algorithms_enabled(), tf_config.is_op_determinism_enabled())
    assert torch.get_num_threads() == threads


class Payload:
    """Unpickling this runs code that writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def plant(trained: Trainer, framework: str, tmp_path: Path) -> Path:
    """A cache in tmp_path whose sidecar is genuine; returns the weights path to replace."""
    weights, sidecar = cache_paths("digits_mlp", framework, cache_dir=tmp_path)
    info = trained("digits_mlp", framework).recipe_info  # type: ignore[attr-defined]
    tmp_path.mkdir(exist_ok=True)
    shutil.copyfile(Path(info["weights_path"]).with_name(sidecar.name), sidecar)
    return weights


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_unsafe_pickle_is_refused_not_run(trained: Trainer, tmp_path: Path, how: str) -> None:
    import torch

    marker = tmp_path / "marker"
    weights = plant(trained, "torch", tmp_path / "cache")
    if how == "torch.save":
        torch.save({"0.weight": Payload(marker)}, weights)
    else:
        weights.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(HarnessError) as err:
        load_recipe("digits_mlp", "torch", cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert "\n" not in message and str(weights) in message and "retrain=True" in message
    assert not marker.exists()
    pickle.loads(pickle.dumps(Payload(marker)))  # the payload is live: unpickling runs it
    assert marker.read_text() == "ran"
    fixed = load_recipe("digits_mlp", "torch", cache_dir=tmp_path / "cache", retrain=True)
    assert fixed.recipe_info["from_cache"] is False  # type: ignore[attr-defined]
    reloaded = load_recipe("digits_mlp", "torch", cache_dir=tmp_path / "cache")
    assert reloaded.recipe_info["from_cache"] is True  # type: ignore[attr-defined]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_corrupt_weights_or_sidecar_refused(trained: Trainer, tmp_path: Path, framework: str) -> None:
    weights = plant(trained, framework, tmp_path)
    weights.write_bytes(b"\x89HDF\r\n garbage")
    with pytest.raises(HarnessError, match="delete it or pass retrain=True") as err:
        load_recipe("digits_mlp", framework, cache_dir=tmp_path)
    assert str(weights) in str(err.value) and "\n" not in str(err.value)
    _, sidecar = cache_paths("digits_mlp", framework, cache_dir=tmp_path)
    sidecar.write_text("{not json")
    with pytest.raises(HarnessError, match=sidecar.name):
        load_recipe("digits_mlp", framework, cache_dir=tmp_path)


def test_unknown_names_list_known_ones() -> None:
    with pytest.raises(HarnessError, match="known recipes: digits_cnn, digits_mlp, mnist_cnn"):
        load_recipe("resnet50", "torch")
    with pytest.raises(HarnessError, match="known frameworks: tensorflow, torch"):
        load_recipe("digits_mlp", "jax")
    with pytest.raises(HarnessError):
        recipe_info("nope", "torch")


def test_cache_name_tracks_hyperparameters_version_and_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, sidecar = cache_paths("digits_mlp", "torch", cache_dir=tmp_path)
    assert base.parent == tmp_path and base.name.startswith("digits_mlp-torch-v1-")
    assert base.suffix == ".pt" and sidecar.suffix == ".json"
    keras_file = cache_paths("digits_mlp", "tensorflow", cache_dir=tmp_path)[0]
    assert keras_file.name.endswith(".weights.h5")
    seen = {base}
    for change in (
        {"epochs": 31},
        {"lr": 1e-3},
        {"seed": 1},
        {"batch_size": 64},
        {"version": 2},
        {"layers": (("flatten",), ("dense", 10))},
    ):
        monkeypatch.setitem(RECIPES, "digits_mlp", dataclasses.replace(RECIPES["digits_mlp"], **change))
        seen.add(cache_paths("digits_mlp", "torch", cache_dir=tmp_path)[0])
    assert len(seen) == 7
    # the data: two MNIST directories (official split) that differ in one pixel
    for i, pixel in enumerate((0, 1)):
        images = np.full((3, 28, 28), 9, np.uint8)
        images[0, 0, 0] = pixel
        write_mnist(tmp_path / f"mnist{i}", images, np.arange(3, dtype=np.uint8))
    assert cache_paths("mnist_cnn", "torch", data_path=tmp_path / "mnist0") != cache_paths(
        "mnist_cnn", "torch", data_path=tmp_path / "mnist1"
    )


def write_mnist(d: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """``d`` holding both official MNIST splits as gzipped IDX files, each these arrays."""
    d.mkdir()
    for stem in ("t10k", "train"):
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            head = struct.pack(f">HBB{arr.ndim}I", 0, 8, arr.ndim, *arr.shape)
            (d / f"{stem}-{kind}-ubyte.gz").write_bytes(gzip.compress(head + arr.tobytes()))
    return d


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_out_of_range_training_label_is_refused(tmp_path: Path, framework: str) -> None:
    data = write_mnist(
        tmp_path / "mnist", np.full((4, 28, 28), 9, np.uint8), np.array([0, 1, 12, 3], np.uint8)
    )
    with pytest.raises(HarnessError) as e:
        load_recipe("mnist_cnn", framework, data_path=data, cache_dir=tmp_path / "cache")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(
        "recipe 'mnist_cnn': mnist train labels out of range [0, 9] (min 0, max 12; "
    )
    assert not (tmp_path / "cache").exists()  # nothing trained, nothing half-written


def test_cache_dir_is_the_user_cache_unless_the_environment_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import platformdirs

    monkeypatch.delenv("ADVHARNESS_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # read by platformdirs on Linux
    default = recipes.default_cache_dir()
    assert default == Path(platformdirs.user_cache_dir("advharness")) / "models"
    if sys.platform.startswith("linux"):
        assert default == tmp_path / "xdg" / "advharness" / "models"
    assert cache_paths("digits_cnn", "torch")[0].parent == default
    assert not default.exists()  # naming the paths creates nothing
    monkeypatch.setenv("ADVHARNESS_CACHE", str(tmp_path))
    assert cache_paths("digits_cnn", "torch")[0].parent == tmp_path


def test_builders_agree_across_frameworks() -> None:
    for name, recipe in RECIPES.items():
        torch_net = recipes.BACKENDS["torch"].build(recipe)
        keras_net = recipes.BACKENDS["tensorflow"].build(recipe)
        n_torch = sum(p.numel() for p in torch_net.parameters())
        assert n_torch == keras_net.count_params(), name
        c, h, w = recipe.input_shape
        x = np.zeros((2, c, h, w), np.float32)
        import torch

        assert tuple(torch_net(torch.from_numpy(x)).shape) == (2, 10)
        assert tuple(keras_net(from_nchw(x, "NHWC")).shape) == (2, 10)


def test_mnist_cnn_trains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Torch, one epoch (the recipe has 4), to keep the suite fast: learns, right shapes.

    The Keras build of the same architecture is checked in test_builders_agree_*.
    """
    framework = "torch"
    monkeypatch.setitem(RECIPES, "mnist_cnn", dataclasses.replace(RECIPES["mnist_cnn"], epochs=1))
    model = load_recipe("mnist_cnn", framework, cache_dir=tmp_path)
    info = model.recipe_info  # type: ignore[attr-defined]
    assert info["n_train"] == 8000 and info["n_test"] == 2000 and "re-split" in info["dataset_source"]
    assert info["test_accuracy"] >= 0.9
    assert model.input_shape == (1, 28, 28) and model.layout == "NCHW"


def test_import_is_light() -> None:
    code = (
        "import sys, advharness.zoo.recipes; "
        "print(sorted({'torch', 'tensorflow', 'keras'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
