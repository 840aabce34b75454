"""Training-time and architecture defenses as cached model variants, and logit ensembles.

:func:`train_defended` trains a built-in recipe (:data:`advharness.config.catalogue.RECIPES`)
with one defense (:data:`DEFENSES`; how each trains: :mod:`advharness.zoo.defense_training`)
on first use and caches it next to the recipes (same directory, naming, atomic writes, JSON
sidecar, ``weights_only=True`` loading). The cache key hashes the variant's hyperparameters
and architecture, the dataset fingerprints, the defense and its parameters, and ART's version.

:func:`ensemble_model` averages the logits of already wrapped models of one framework.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from advharness.config.catalogue import Recipe
from advharness.core.atomic import atomic_write
from advharness.core.errors import HarnessError
from advharness.core.versions import package_version
from advharness.models.base import WrappedModel
from advharness.models.layout import to_layout
from advharness.zoo.defense_training import TRAINERS, bounded_layers
from advharness.zoo.recipes import (
    checked_splits,
    get_recipe,
    keyed_paths,
    read_sidecar,
    refuse_cached,
)

log = logging.getLogger(__name__)
progress = logging.getLogger("advharness.progress")

#: Bump on any change to how a defense trains: every cached variant retrains.
VARIANTS_VERSION = 1
ART = "adversarial-robustness-toolbox"
#: Each defense's parameters (all required) and their kinds: "int", "float" or a tuple of choices.
DEFENSES: dict[str, dict[str, Any]] = {
    "adversarial_training": {
        "method": ("fgsm", "fgsm_rs", "pgd"),
        "eps": "float",
        "step_size": "float",
        "steps": "int",
        "ratio": "float",
        "epochs": "int",
    },
    "gaussian_augmentation": {"sigma": "float", "ratio": "float", "epochs": "int"},
    "label_smoothing": {"max_value": "float", "epochs": "int"},
    "distillation": {"temperature": "float", "epochs": "int"},
    "bounded_relu": {"cap": "float", "epochs": "int"},
}


def check_params(defense: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` normalised (ints, floats), or a one-line :class:`HarnessError`."""
    if defense not in DEFENSES:
        raise HarnessError(f"unknown defense {defense!r}; known: {', '.join(sorted(DEFENSES))}")
    kinds = DEFENSES[defense]
    missing, unknown = sorted(set(kinds) - set(params)), sorted(set(params) - set(kinds))
    if missing or unknown:
        raise HarnessError(
            f"defense {defense!r}: "
            + "; ".join(
                f"{what} parameter(s) {', '.join(names)}"
                for what, names in (("missing", missing), ("unknown", unknown))
                if names
            )
            + f" (takes {', '.join(kinds)})"
        )
    out: dict[str, Any] = {}
    for key, kind in kinds.items():
        v = params[key]
        where = f"defense {defense!r}: {key}"
        if isinstance(kind, tuple):
            if v not in kind:
                raise HarnessError(f"{where} must be one of {', '.join(kind)}, got {v!r}")
            out[key] = v
        elif isinstance(v, bool) or not isinstance(v, int | float | np.number) or not math.isfinite(v):
            raise HarnessError(f"{where} must be a finite number, got {v!r}")
        elif kind == "int":
            if not float(v).is_integer() or v < 1:
                raise HarnessError(f"{where} must be a whole number >= 1, got {v!r}")
            out[key] = int(v)
        else:
            out[key] = float(v)
    if defense == "adversarial_training":
        if out["method"] in ("fgsm", "fgsm_rs") and out["steps"] != 1:
            raise HarnessError(
                f"defense {defense!r}: steps must be 1 for method {out['method']}, got {out['steps']}"
            )
        if not 0 < out["ratio"] <= 1:
            raise HarnessError(f"defense {defense!r}: ratio must be in (0, 1], got {out['ratio']}")
    return out


def _variant(recipe: Recipe, defense: str, params: Mapping[str, Any]) -> Recipe:
    import dataclasses

    variant = dataclasses.replace(recipe, epochs=int(params["epochs"]))
    return bounded_layers(variant, params["cap"]) if defense == "bounded_relu" else variant


def _paths(
    variant: Recipe,
    framework: str,
    defense: str,
    params: Mapping[str, Any],
    fingerprints: dict[str, str],
    cache_dir: str | Path | None,
) -> tuple[Path, Path]:
    content = {
        "hp": variant.hyperparameters(),
        "layers": variant.layers,
        "dataset": variant.dataset,
        **fingerprints,
        "defense": defense,
        "params": dict(params),
        "art": package_version(ART),
        "variants_version": VARIANTS_VERSION,
    }
    stem = f"{variant.name}-{framework}+{defense}-v{variant.version}.{VARIANTS_VERSION}"
    return keyed_paths(content, stem, framework, cache_dir)


def defended_cached(
    recipe: str,
    framework: str,
    defense: str,
    params: Mapping[str, Any],
    *,
    data_path: str | None = None,
    cache_dir: str | Path | None = None,
) -> bool:
    """Whether :func:`train_defended` with these arguments would load from the cache."""
    base, _ = get_recipe(recipe, framework)
    p = check_params(defense, params)
    _, _, fingerprints = checked_splits(base, data_path)
    weights, sidecar = _paths(_variant(base, defense, p), framework, defense, p, fingerprints, cache_dir)
    return weights.is_file() and sidecar.is_file()


def train_defended(
    recipe: str,
    framework: str,
    defense: str,
    params: Mapping[str, Any],
    *,
    data_path: str | None = None,
    cache_dir: str | Path | None = None,
) -> WrappedModel:
    """``recipe`` trained in ``framework`` with ``defense`` (``params``: all its keys), wrapped.

    Trained on first use, then loaded from the cache. ``recipe_info`` holds the defense, its
    parameters, the ART classes and arguments used (``art``), ``train_time_s``,
    ``test_accuracy``, the recipe's own record, ``weights_path`` and ``from_cache``.
    """
    from advharness.core.frameworks import require_framework

    base, backend = get_recipe(recipe, framework)
    p = check_params(defense, params)
    require_framework(framework, f"defended recipe {recipe!r} ({framework})")
    if framework == "tensorflow":
        from advharness.core.quiet import import_tensorflow

        import_tensorflow()  # before Keras: without TensorFlow's native banner
    variant = _variant(base, defense, p)
    train, test, fingerprints = checked_splits(base, data_path)
    weights, sidecar = _paths(variant, framework, defense, p, fingerprints, cache_dir)
    from_cache = weights.is_file() and sidecar.is_file()
    if from_cache:
        info = read_sidecar(sidecar)
        try:
            net = backend.load(variant, weights)
        except Exception as e:
            raise refuse_cached(weights, e) from e
        model = backend.wrap(net, variant)
        log.info("loaded %s-%s+%s from the cache: %s", recipe, framework, defense, weights)
    else:
        versions = backend.versions()  # imports the framework before the clock starts
        progress.info(
            "training %s (%s) with %s on first use: %d %s train images, %d epochs; cached in %s",
            recipe,
            framework,
            defense,
            len(train.x),
            base.dataset,
            variant.epochs,
            weights.parent,
        )
        start = time.perf_counter()
        net, art = TRAINERS[defense](variant, framework, train, p)
        train_time = time.perf_counter() - start
        model = backend.wrap(net, variant)
        accuracy = float(np.mean(model.predict(to_layout(test.x, model)) == test.y))
        log.info(
            "trained %s-%s+%s in %.1f s; test accuracy %.4f", recipe, framework, defense, train_time, accuracy
        )
        info = {
            "recipe": recipe,
            "framework": framework,
            "version": base.version,
            "variants_version": VARIANTS_VERSION,
            "defense": defense,
            "params": p,
            "art": art,
            "dataset": base.dataset,
            "dataset_source": train.source,
            "n_train": len(train.x),
            "n_test": len(test.x),
            **fingerprints,
            "recipe_hyperparameters": base.hyperparameters(),
            "hyperparameters": variant.hyperparameters(),
            "layers": [list(layer) for layer in variant.layers],
            "train_time_s": round(train_time, 3),
            "test_accuracy": accuracy,
            "versions": {
                "python": platform.python_version(),
                "numpy": np.__version__,
                "art": package_version(ART),
                **versions,
            },
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        atomic_write(weights, lambda path: backend.save(net, path), suffix=backend.suffix)
        atomic_write(sidecar, lambda path: path.write_text(json.dumps(info, indent=2, sort_keys=True)))
    model.name = f"{recipe}-{framework}+{defense}"
    model.family = recipe
    model.recipe_info = {**info, "weights_path": str(weights), "from_cache": from_cache}  # type: ignore[attr-defined]
    return model


def ensemble_model(members: Sequence[WrappedModel], *, name: str) -> WrappedModel:
    """One model whose logits are the mean of ``members``' logits (gradients flow through
    every member). Members must share framework, input shape, layout, bounds and classes."""
    from advharness.zoo.ensemble import build_ensemble

    return build_ensemble(members, name=name)
