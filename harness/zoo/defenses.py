"""Build an experiment's defended variants (see :mod:`advharness.config.defenses`).

Trained defenses retrain the base model's recipe (:mod:`advharness.zoo.trained_defenses`,
cached like recipes); preprocessing defenses wrap the base model
(:mod:`advharness.models.preprocessing`); an adaptive surrogate wraps it again with BPDA /
EOT gradients and is judged on the deployed defense; the feature-squeezing detector wraps
the base classifier with a threshold calibrated on clean images the experiment does not
evaluate.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from advharness.config.defenses import PREPROCESSING, TRAINED, DefenseConfig
from advharness.core.errors import HarnessError
from advharness.models.base import WrappedModel

if TYPE_CHECKING:
    from advharness.config.experiment import Experiment, ModelConfig

log = logging.getLogger(__name__)

#: Fewest held-out clean images a detector's threshold is calibrated on.
MIN_CALIBRATION = 20
#: Inputs the preprocessing cost is measured on (seconds per input, against the base model).
COST_SAMPLES = 256


def _params(exp: Experiment, d: DefenseConfig) -> dict[str, Any]:
    """The defense's parameters as built: trained defenses get the recipe's epochs when the
    file gives none; the detector's own (fpr, calibration) are not the squeezers'."""
    from advharness.config.catalogue import RECIPES

    params = d.resolved_params
    if d.defense in TRAINED and params.get("epochs") is None:
        base = next(m for m in exp.models if m.key == d.of)
        assert base.recipe is not None  # validated: trained defenses need a recipe model
        params["epochs"] = RECIPES[base.recipe].epochs
    return params


def defense_cached(exp: Experiment, mc: ModelConfig) -> bool:
    """Whether ``mc`` builds without training: preprocessing, ensembles, the detector; a
    trained defense once its weights are cached."""
    d = mc.defense
    assert d is not None
    if d.defense not in TRAINED:
        return True
    from advharness.zoo.trained_defenses import defended_cached

    base = next(m for m in exp.models if m.key == d.of)
    assert base.recipe is not None
    return defended_cached(base.recipe, base.framework, d.defense, _params(exp, d), data_path=exp.data.path)


def build_defense(exp: Experiment, mc: ModelConfig, models: dict[str, WrappedModel]) -> WrappedModel:
    """Model entry ``mc`` (a defense variant or its surrogate), from the models built so far."""
    d = mc.defense
    assert d is not None
    params = _params(exp, d)
    if mc.surrogate:
        m = _surrogate(d, params, models)
    elif d.defense in TRAINED:
        m = _trained(exp, d, params)
    elif d.defense == "ensemble":
        from advharness.zoo.trained_defenses import ensemble_model

        members = [models[k] for k in d.members or ()]
        m = ensemble_model(members, name=d.key)
        inherit_randomness(m, *members)
    elif d.defense == "squeeze_detector":
        m = _detected(exp, d, params, models[_of(d)])
    else:
        m = _preprocessed(d, params, models[_of(d)])
    m.name, m.family = mc.key, mc.key
    info = dict(m.defense_info or {})
    info.update(defense=d.defense, of=d.of, members=d.members, params=params)
    m.defense_info = info
    return m


def _of(d: DefenseConfig) -> str:
    assert d.of is not None
    return d.of


def _trained(exp: Experiment, d: DefenseConfig, params: dict[str, Any]) -> WrappedModel:
    from advharness.zoo.trained_defenses import train_defended

    base = next(m for m in exp.models if m.key == d.of)
    assert base.recipe is not None
    m = train_defended(base.recipe, base.framework, d.defense, params, data_path=exp.data.path)
    info = getattr(m, "recipe_info", None) or {}
    m.defense_info = {"train_time_s": info.get("train_time_s"), "art": info.get("art")}
    return m


def _preprocessed(d: DefenseConfig, params: dict[str, Any], base: WrappedModel) -> WrappedModel:
    from advharness.models.preprocessing import preprocessed_model

    m = preprocessed_model(base, d.defense, params, gradient="exact", eot=1, name=d.key)
    m.evaluations = d.resolved_evaluations
    inherit_randomness(m, base)
    info = dict(m.defense_info or {})
    info.update(
        evaluations=m.evaluations,
        seconds_per_input=_cost(m),
        base_seconds_per_input=_cost(base),
    )
    m.defense_info = info
    return m


def _surrogate(d: DefenseConfig, params: dict[str, Any], models: dict[str, WrappedModel]) -> WrappedModel:
    """The adaptive surrogate of preprocessing defense ``d``: BPDA through the preprocessing
    (EOT over ``eot`` draws for a randomized one), on top of the base's own surrogate when
    the base is itself a preprocessing defense (so the backward pass skips every stage)."""
    from advharness.models.preprocessing import preprocessed_model

    assert d.defense in PREPROCESSING and d.surrogate_key is not None
    deployed = models[d.key]
    base_key = _of(d)
    inner = next((k for k in models if k.startswith(base_key + "@")), None)
    base = (
        models[inner]
        if inner is not None and models[inner].deployed is models[base_key]
        else models[base_key]
    )
    eot = d.resolved_eot if d.randomized else 1
    m = preprocessed_model(base, d.defense, params, gradient="bpda", eot=eot, name=d.surrogate_key)
    m.deployed = deployed
    return m


def _detected(exp: Experiment, d: DefenseConfig, params: dict[str, Any], base: WrappedModel) -> WrappedModel:
    """The base classifier with a feature-squeezing detector (Xu et al. 2018): the score is
    the largest L1 distance between the softmax on the input and on each squeezed input; the
    threshold flags at most ``fpr`` of up to ``calibration_samples`` clean images of the
    evaluated split that the experiment does not evaluate (same distribution as the
    evaluated ones; a model's training images would understate its false positives)."""
    from advharness.models.detector import Detector, threshold_for
    from advharness.models.layout import to_layout
    from advharness.models.preprocessing import squeeze_scores
    from advharness.models.wrap import rewrap
    from advharness.zoo.data import load_dataset, to_bounds

    squeezers: list[tuple[str, dict[str, Any]]] = []
    if params["bit_depth"] is not None:
        squeezers.append(("feature_squeezing", {"bit_depth": params["bit_depth"], "median_window": None}))
    if params["median_window"] is not None:
        squeezers.append(("spatial_smoothing", {"window": params["median_window"]}))
    data = exp.data
    full = load_dataset(data.dataset, data.split, None, 0, data.path)
    held_out = np.concatenate([full.x[: data.offset], full.x[data.offset + data.n_samples :]])
    held_out = held_out[: params["calibration_samples"]]
    if len(held_out) < MIN_CALIBRATION:
        raise HarnessError(
            f"defense {d.key!r}: {full.name} {full.split} has {len(held_out)} images outside the "
            f"evaluated ones to calibrate the detector on; it needs at least {MIN_CALIBRATION}"
        )
    calib = to_layout(to_bounds(held_out, base.bounds), base)
    threshold = threshold_for(squeeze_scores(base, calib, squeezers), params["fpr"])
    m = rewrap(base, d.key)  # the deployed classifier is the base's, unchanged
    inherit_randomness(m, base)

    def score(x: np.ndarray) -> np.ndarray:
        return squeeze_scores(base, x, squeezers)

    m.detector = Detector(
        score,
        threshold,
        {
            "squeezers": squeezers,
            "fpr": params["fpr"],
            "threshold": threshold,
            "calibration": f"{full.name} {full.split}: {len(held_out)} clean images not evaluated",
        },
    )
    m.defense_info = {"detector": m.detector.info}
    return m


def inherit_randomness(model: WrappedModel, *built_from: WrappedModel) -> None:
    """A model built on a randomized one is randomized too and evaluated at least as often
    (a deterministic defense stacked on a noisy one must not be judged on one evaluation)."""
    for b in built_from:
        model.randomized = model.randomized or b.randomized
        model.evaluations = max(model.evaluations, b.evaluations)


def _cost(model: WrappedModel) -> float:
    """Seconds per input of ``model``'s forward pass on random inputs in its bounds."""
    lo, hi = model.bounds
    rng = np.random.default_rng(0)
    x = rng.uniform(lo, hi, (COST_SAMPLES, *model.input_shape)).astype(np.float32)
    model.predict_logits(x[:8])  # build / warm up
    t0 = time.perf_counter()
    model.predict_logits(x)
    return (time.perf_counter() - t0) / COST_SAMPLES
