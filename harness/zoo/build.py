"""An experiment's models: recipes (trained once, cached), factories, RobustBench models,
substitutes."""

from __future__ import annotations

import numpy as np

from advharness.config.experiment import Experiment, ModelConfig
from advharness.core.frameworks import missing_device_reason, missing_framework_reason
from advharness.core.seeding import derive_seed
from advharness.models.base import WrappedModel
from advharness.zoo.data import Dataset


def missing_framework(exp: Experiment, key: str) -> str | None:
    """Why model ``key`` of ``exp`` cannot be built here: its framework (a substitute's, or
    its target's) is not installed, as one line naming the extra to install, or its
    ``device`` is not available here, as one line naming the device; else None."""
    mc = next(m for m in exp.model_entries() if m.key == key)
    reason = missing_framework_reason(mc.framework)
    if reason is None:
        reason = missing_device_reason(mc.framework, mc.device)
    if reason is None and mc.robustbench is not None:
        reason = missing_framework_reason("robustbench")
    if reason is None and mc.substitute_of is not None:
        return missing_framework(exp, mc.substitute_of)
    if reason is None and mc.defense is not None:  # built from models that may need one
        bases = [mc.defense.of] if mc.defense.of is not None else list(mc.defense.members or ())
        return next((r for b in bases if (r := missing_framework(exp, b)) is not None), None)
    return reason


def build_models(exp: Experiment, ds: Dataset, *, train: bool = True) -> dict[str, WrappedModel]:
    """The experiment's models by key: recipes (trained once, cached), factories, substitutes.

    ``train=False``: only the models that need no training (factories, cached recipes).
    Models whose framework is not installed (:func:`missing_framework`) are left out: their
    cells are ``unsupported`` rows."""
    from advharness.zoo.recipes import load_recipe, recipe_info

    models: dict[str, WrappedModel] = {}
    for mc in exp.model_entries():
        if missing_framework(exp, mc.key) is not None:
            continue
        if mc.defense is not None:
            from advharness.zoo.defenses import build_defense

            needs = [mc.defense.of] if mc.defense.of is not None else list(mc.defense.members or ())
            if any(k not in models for k in needs):
                continue  # built from a model left out (train=False)
            if not train and not defense_ready(exp, mc):
                continue
            m = build_defense(exp, mc, models)
        elif mc.substitute_of is not None:
            if not train:
                continue
            m = _substitute(exp, mc, models[mc.substitute_of], ds.x)
        elif mc.factory is not None:
            from advharness.zoo.factory import load_factory_model

            m = load_factory_model(mc)
        elif mc.robustbench is not None:
            from advharness.zoo.robustbench import load_robustbench_model

            m = load_robustbench_model(mc)
        else:
            assert mc.recipe is not None  # validated: exactly one of recipe / factory
            if not train and recipe_info(mc.recipe, mc.framework, data_path=exp.data.path) is None:
                continue
            m = load_recipe(mc.recipe, mc.framework, data_path=exp.data.path)
            m.name, m.family = mc.key, mc.recipe
        m.place(mc.device)  # trained (recipes, substitutes) on the CPU; evaluated there
        models[mc.key] = m
    return models


def defense_ready(exp: Experiment, mc: ModelConfig) -> bool:
    """Whether defense variant ``mc`` can be built without training (trained ones: cached)."""
    from advharness.zoo.defenses import defense_cached

    return defense_cached(exp, mc)


def check_factories(exp: Experiment) -> None:
    """Build each factory model once in a child process (with the experiment's
    ``model_build_time_limit_s``) before this process does: a factory that hangs or ends its
    process is a one-line error naming the model. Recipes and substitutes are the harness's
    own code, built here directly."""
    from advharness.zoo.factory import check_factory_model

    for mc in exp.models:
        if mc.factory is not None and missing_framework(exp, mc.key) is None:
            check_factory_model(mc, exp.model_build_time_limit_s)


def _substitute(exp: Experiment, mc: ModelConfig, target: WrappedModel, eval_x: np.ndarray) -> WrappedModel:
    """Train ``mc`` from ``target``'s answers on the attacker's pool: the dataset split the
    experiment does not evaluate on (so pool and evaluation images never overlap)."""
    from advharness.zoo.data import load_dataset
    from advharness.zoo.substitute import train_substitute

    d = exp.data
    pool = load_dataset(d.dataset, "train" if d.split == "test" else "test", path=d.path)
    assert mc.queries is not None and mc.recipe is not None  # validated
    m = train_substitute(
        target,
        pool.x,
        recipe=mc.recipe,
        framework=mc.framework,
        queries=mc.queries,
        labels_only=mc.labels_only,
        epochs=mc.epochs,
        seed=derive_seed(exp.seed, "substitute", mc.key),
        eval_x=eval_x,
    )
    m.name = mc.key
    info = m.substitute_info  # type: ignore[attr-defined]
    info["pool"] = f"{pool.name} {pool.split} ({len(pool.x)} images; {pool.source})"
    return m
