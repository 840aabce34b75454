"""Built-in model recipes: small classifiers trained deterministically on CPU, then cached.

A :class:`Recipe` names a dataset, one architecture (a tuple of layer specs, built the same
way in every framework) and its training hyperparameters. :func:`load_recipe` trains it on
the dataset's ``train`` split on first use and caches the weights; later calls load them.

Cache files live in ``cache_dir``, else ``$ADVHARNESS_CACHE``, else ``models`` in the user's
cache directory (:func:`default_cache_dir`). Their names hold the recipe, framework, recipe version and a
hash of the hyperparameters, architecture and dataset fingerprints, so any change retrains.
Each weights file has a JSON sidecar (train time, test accuracy, versions, hyperparameters).
Torch weights are loaded with ``weights_only=True``; a file that cannot be loaded that way
is refused, never unpickled unsafely.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from advharness.config.catalogue import RECIPES, Recipe
from advharness.core.atomic import atomic_write
from advharness.core.errors import HarnessError
from advharness.core.seeding import deterministic
from advharness.models.base import WrappedModel
from advharness.models.layout import from_nchw, shape_in, to_layout
from advharness.zoo.data import Dataset, load_dataset

log = logging.getLogger(__name__)
#: Lines a user waiting on the terminal should see (the CLI shows this logger at INFO).
progress = logging.getLogger("advharness.progress")


# -- torch ---------------------------------------------------------------------------------
def torch_build(recipe: Recipe) -> Any:
    import torch

    c, h, w = recipe.input_shape
    mods: list[torch.nn.Module] = []
    for kind, *a in recipe.layers:
        if kind == "conv":
            mods.append(torch.nn.Conv2d(c, a[0], a[1]))
            c, h, w = a[0], h - a[1] + 1, w - a[1] + 1
        elif kind == "pool":
            mods.append(torch.nn.MaxPool2d(a[0]))
            h, w = h // a[0], w // a[0]
        elif kind == "relu":
            mods.append(torch.nn.ReLU())
        elif kind == "brelu":  # bounded ReLU min(max(0, x), cap) (trained defenses)
            mods.append(torch.nn.Hardtanh(0.0, float(a[0])))
        elif kind == "flatten":
            mods.append(torch.nn.Flatten())
            c, h, w = c * h * w, 1, 1
        elif kind == "dense":
            mods.append(torch.nn.Linear(c, a[0]))
            c = a[0]
        else:
            raise ValueError(f"unknown layer kind {kind!r}")
    return torch.nn.Sequential(*mods)


def _torch_train(recipe: Recipe, train: Dataset) -> Any:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: faster on busy CPUs, and thread-count independent
    try:
        with deterministic("torch", recipe.seed, restore_generators=True):
            net = torch_build(recipe)
            x, y = torch.from_numpy(train.x), torch.from_numpy(train.y)
            opt = torch.optim.Adam(net.parameters(), lr=recipe.lr)
            rng = np.random.default_rng(recipe.seed)
            net.train()
            for _ in range(recipe.epochs):
                perm = torch.from_numpy(rng.permutation(len(x)))
                for i in range(0, len(x), recipe.batch_size):
                    idx = perm[i : i + recipe.batch_size]
                    opt.zero_grad(set_to_none=True)
                    # int64 labels, or (N, C) float probabilities (soft labels: trained defenses)
                    torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
                    opt.step()
            net.eval()
    finally:
        torch.set_num_threads(threads)
    return net


def _torch_save(net: Any, path: Path) -> None:
    import torch

    torch.save(net.state_dict(), path)


def _torch_load(recipe: Recipe, path: Path) -> Any:
    import torch

    net = torch_build(recipe)
    with warnings.catch_warnings():  # refused files are reported by the caller
        warnings.filterwarnings("ignore", "Detected pickle protocol")
        state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return net.eval()


def _torch_wrap(net: Any, recipe: Recipe) -> WrappedModel:
    from advharness.models.torch_model import TorchModel

    return TorchModel(
        net,
        input_shape=recipe.input_shape,
        nb_classes=recipe.nb_classes,
        bounds=(0.0, 1.0),
        layout="NCHW",
        name=f"{recipe.name}-torch",
    )


def _torch_versions() -> dict[str, str]:
    import torch

    return {"torch": torch.__version__}


# -- tensorflow / keras --------------------------------------------------------------------
def keras_build(recipe: Recipe) -> Any:
    import keras

    layers: list[Any] = [keras.Input(shape_in("NHWC", recipe.input_shape))]
    for kind, *a in recipe.layers:
        if kind == "conv":
            layers.append(keras.layers.Conv2D(a[0], a[1]))
        elif kind == "pool":
            layers.append(keras.layers.MaxPooling2D(a[0]))
        elif kind == "relu":
            layers.append(keras.layers.ReLU())
        elif kind == "brelu":  # bounded ReLU min(max(0, x), cap) (trained defenses)
            layers.append(keras.layers.ReLU(max_value=float(a[0])))
        elif kind == "flatten":
            layers.append(keras.layers.Flatten())
        elif kind == "dense":
            layers.append(keras.layers.Dense(a[0]))
        else:
            raise ValueError(f"unknown layer kind {kind!r}")
    return keras.Sequential(layers, name=recipe.name)


def _keras_train(recipe: Recipe, train: Dataset) -> Any:
    import keras
    import tensorflow as tf

    with deterministic("tensorflow", recipe.seed, restore_generators=True):
        net = keras_build(recipe)
        opt = keras.optimizers.Adam(recipe.lr, epsilon=1e-8)
        opt.build(net.trainable_variables)
        loss_fn = (
            keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            if train.y.ndim == 1
            else keras.losses.CategoricalCrossentropy(from_logits=True)  # soft labels (trained defenses)
        )

        @tf.function(reduce_retracing=True)
        def step(xb: tf.Tensor, yb: tf.Tensor) -> None:
            with tf.GradientTape() as tape:
                loss = loss_fn(yb, net(xb, training=True))
            opt.apply_gradients(
                zip(tape.gradient(loss, net.trainable_variables), net.trainable_variables, strict=True)
            )

        x = from_nchw(train.x, "NHWC")
        rng = np.random.default_rng(recipe.seed)
        for _ in range(recipe.epochs):
            perm = rng.permutation(len(x))
            for i in range(0, len(x), recipe.batch_size):
                idx = perm[i : i + recipe.batch_size]
                step(tf.constant(x[idx]), tf.constant(train.y[idx]))
    return net


def _keras_save(net: Any, path: Path) -> None:
    net.save_weights(path)


def _keras_load(recipe: Recipe, path: Path) -> Any:
    net = keras_build(recipe)
    net.load_weights(path)
    return net


def _keras_wrap(net: Any, recipe: Recipe) -> WrappedModel:
    from advharness.models.tf_model import TFModel

    return TFModel(
        net,
        input_shape=shape_in("NHWC", recipe.input_shape),
        nb_classes=recipe.nb_classes,
        bounds=(0.0, 1.0),
        layout="NHWC",
        name=f"{recipe.name}-tensorflow",
    )


def _keras_versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__}


@dataclass(frozen=True)
class _Backend:
    suffix: str
    build: Callable[[Recipe], Any]
    train: Callable[[Recipe, Dataset], Any]
    save: Callable[[Any, Path], None]
    load: Callable[[Recipe, Path], Any]
    wrap: Callable[[Any, Recipe], WrappedModel]
    versions: Callable[[], dict[str, str]]


BACKENDS: dict[str, _Backend] = {
    "torch": _Backend(
        ".pt",
        torch_build,
        _torch_train,
        _torch_save,
        _torch_load,
        _torch_wrap,
        _torch_versions,
    ),
    "tensorflow": _Backend(
        ".weights.h5",
        keras_build,
        _keras_train,
        _keras_save,
        _keras_load,
        _keras_wrap,
        _keras_versions,
    ),
}


# -- cache ---------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """``$ADVHARNESS_CACHE``, else ``platformdirs.user_cache_dir("advharness")/models``
    (``~/.cache/advharness/models`` on Linux, ``$XDG_CACHE_HOME`` honoured)."""
    env = os.environ.get("ADVHARNESS_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("advharness")) / "models"


def get_recipe(name: str, framework: str) -> tuple[Recipe, _Backend]:
    """The recipe and framework backend, or a one-line error listing the known names."""
    if name not in RECIPES:
        raise HarnessError(f"unknown recipe {name!r}; known recipes: {', '.join(sorted(RECIPES))}")
    if framework not in BACKENDS:
        raise HarnessError(
            f"unknown framework {framework!r}; known frameworks: {', '.join(sorted(BACKENDS))}"
        )
    return RECIPES[name], BACKENDS[framework]


def _splits(recipe: Recipe, data_path: str | Path | None) -> tuple[Dataset, Dataset]:
    return (
        load_dataset(recipe.dataset, "train", path=data_path),
        load_dataset(recipe.dataset, "test", path=data_path),
    )


def _check_labels(recipe: Recipe, *splits: Dataset) -> None:
    """Refuse training data whose labels the recipe's classes cannot hold (one line)."""
    for ds in splits:
        if ds.y.size and (ds.y.min() < 0 or ds.y.max() >= recipe.nb_classes):
            raise HarnessError(
                f"recipe {recipe.name!r}: {ds.name} {ds.split} labels out of range "
                f"[0, {recipe.nb_classes - 1}] (min {ds.y.min()}, max {ds.y.max()}; "
                f"{ds.source})"
            )


def _fingerprints(train: Dataset, test: Dataset) -> dict[str, str]:
    return {"train_fingerprint": train.fingerprint(), "test_fingerprint": test.fingerprint()}


def checked_splits(recipe: Recipe, data_path: str | Path | None) -> tuple[Dataset, Dataset, dict[str, str]]:
    """The recipe's ``train`` and ``test`` splits (labels checked) and their fingerprints."""
    train, test = _splits(recipe, data_path)
    _check_labels(recipe, train, test)
    return train, test, _fingerprints(train, test)


def keyed_paths(
    content: dict[str, Any], stem: str, framework: str, cache_dir: str | Path | None
) -> tuple[Path, Path]:
    """The weights file and JSON sidecar of a cached model: ``<stem>-<digest>`` in
    ``cache_dir`` (default :func:`default_cache_dir`), the digest a hash of ``content``."""
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    name = f"{stem}-{digest}"
    return directory / (name + BACKENDS[framework].suffix), directory / (name + ".json")


def _paths(
    recipe: Recipe, framework: str, fingerprints: dict[str, str], cache_dir: str | Path | None
) -> tuple[Path, Path]:
    content = {
        "hp": recipe.hyperparameters(),
        "layers": recipe.layers,
        "dataset": recipe.dataset,
        **fingerprints,
    }
    return keyed_paths(content, f"{recipe.name}-{framework}-v{recipe.version}", framework, cache_dir)


def cache_paths(
    name: str, framework: str, *, data_path: str | Path | None = None, cache_dir: str | Path | None = None
) -> tuple[Path, Path]:
    """Where the weights and the JSON sidecar of a recipe live (whether or not they exist)."""
    recipe, _ = get_recipe(name, framework)
    return _paths(recipe, framework, _fingerprints(*_splits(recipe, data_path)), cache_dir)


def refuse_cached(path: Path, exc: BaseException) -> HarnessError:
    return HarnessError(
        f"cached model {path} cannot be loaded ({type(exc).__name__}: corrupt, or not plain "
        "weights; unsafe content is never loaded); delete it or pass retrain=True"
    )


def read_sidecar(path: Path) -> dict[str, Any]:
    """A cache sidecar's JSON object, or the one-line refusal of :func:`refuse_cached`."""
    try:
        info = json.loads(path.read_text())
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
        return info
    except (OSError, ValueError) as e:
        raise refuse_cached(path, e) from e


def recipe_info(
    name: str, framework: str, *, data_path: str | Path | None = None, cache_dir: str | Path | None = None
) -> dict[str, Any] | None:
    """The sidecar of a cached recipe (train time, accuracy, versions...), or None."""
    weights, sidecar = cache_paths(name, framework, data_path=data_path, cache_dir=cache_dir)
    if not (weights.is_file() and sidecar.is_file()):
        return None
    return read_sidecar(sidecar)


def load_recipe(
    name: str,
    framework: str,
    *,
    data_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    retrain: bool = False,
) -> WrappedModel:
    """A trained recipe, wrapped (bounds (0, 1), logits): from the cache, else trained now.

    The returned model's ``recipe_info`` attribute is the sidecar dict plus ``weights_path``
    and ``from_cache`` (whether this call loaded cached weights rather than training).
    """
    from advharness.core.frameworks import require_framework

    recipe, backend = get_recipe(name, framework)
    require_framework(framework, f"recipe {name!r} ({framework})")
    if framework == "tensorflow":
        from advharness.core.quiet import import_tensorflow

        import_tensorflow()  # before Keras: without TensorFlow's native banner
    train, test = _splits(recipe, data_path)
    _check_labels(recipe, train, test)
    fingerprints = _fingerprints(train, test)
    weights, sidecar = _paths(recipe, framework, fingerprints, cache_dir)
    from_cache = not retrain and weights.is_file() and sidecar.is_file()
    if from_cache:
        info = read_sidecar(sidecar)
        try:
            net = backend.load(recipe, weights)
        except Exception as e:
            raise refuse_cached(weights, e) from e
        model = backend.wrap(net, recipe)
        log.info("loaded %s-%s from the cache: %s", name, framework, weights)
    else:
        versions = backend.versions()  # imports the framework before the clock starts
        progress.info(
            "training recipe %s (%s) on first use: %d %s train images, %d epochs; cached afterwards in %s",
            name,
            framework,
            len(train.x),
            recipe.dataset,
            recipe.epochs,
            weights.parent,
        )
        start = time.perf_counter()
        net = backend.train(recipe, train)
        train_time = time.perf_counter() - start
        model = backend.wrap(net, recipe)
        accuracy = float(np.mean(model.predict(to_layout(test.x, model)) == test.y))
        log.info("trained %s-%s in %.1f s; test accuracy %.4f", name, framework, train_time, accuracy)
        info = {
            "recipe": name,
            "framework": framework,
            "version": recipe.version,
            "dataset": recipe.dataset,
            "dataset_source": train.source,
            "n_train": len(train.x),
            "n_test": len(test.x),
            **fingerprints,
            "hyperparameters": recipe.hyperparameters(),
            "layers": [list(layer) for layer in recipe.layers],
            "train_time_s": round(train_time, 3),
            "test_accuracy": accuracy,
            "versions": {"python": platform.python_version(), "numpy": np.__version__, **versions},
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        atomic_write(weights, lambda p: backend.save(net, p), suffix=backend.suffix)
        atomic_write(sidecar, lambda p: p.write_text(json.dumps(info, indent=2, sort_keys=True)))
    model.family = name  # the head-to-head tables group models by recipe
    info = {**info, "weights_path": str(weights), "from_cache": from_cache}
    model.recipe_info = info  # type: ignore[attr-defined]
    return model
