"""How each training-time or architecture defense trains a recipe's network (with ART where
ART has the defence), for :mod:`advharness.zoo.trained_defenses`.

A trainer takes the *variant* recipe (the recipe with the defense's ``epochs``, and for
``bounded_relu`` its capped activations), the framework, the recipe's ``train`` split and
the defense's parameters; it returns the bare trained network (the recipe's architecture,
raw logits) and a JSON-able record of the ART classes it used and their exact arguments (or
why ART was not used). Every trainer runs under :func:`~advharness.core.seeding.deterministic`
with the recipe's seed, torch on one CPU thread (as the recipes: thread-count independent).

Choices (checked in the installed ART 1.20.1 source):

* FGSM with random start (Wong et al. 2020) is ART's ``ProjectedGradientDescent`` with
  ``max_iter=1, num_random_init=1``: uniform start in the eps ball, one signed step of
  ``eps_step``, projection. ART's ``FastGradientMethod(num_random_init=1)`` ignores
  ``eps_step`` outside ``minimal=True`` (``generate`` passes ``eps`` as the step), so it is
  FGSM-RS only for ``step_size == eps``; ``AdversarialTrainerFBFPyTorch`` is torch-only,
  has no ``ratio`` and imposes its own cyclic learning rate (0 -> 0.21 -> 0) instead of the
  recipe's Adam. One code path (``AdversarialTrainer`` + PGD) serves both frameworks.
* ART's ``TensorFlowV2Classifier.fit`` builds a new ``tf.function`` train step on every call,
  and ``AdversarialTrainer`` calls ``fit`` once per batch: the Keras classifiers get a
  ``train_step`` compiled once (the recipe's Adam update), as ART's API allows.
* ``DefensiveDistillation`` needs teacher and student that output probabilities: both are the
  recipe's network followed by ``softmax(z / T)`` and trained with cross-entropy on those
  probabilities; the student's bare network (raw logits, T = 1) is deployed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from advharness.config.catalogue import Recipe
from advharness.core.seeding import deterministic
from advharness.models.layout import from_nchw, shape_in
from advharness.zoo.data import Dataset
from advharness.zoo.recipes import BACKENDS, keras_build, torch_build

#: ``(variant recipe, framework, train split, params) -> (bare network, ART record)``.
Trainer = Callable[[Recipe, str, Dataset, Mapping[str, Any]], tuple[Any, dict[str, Any]]]
CLIP = (0.0, 1.0)


@contextmanager
def _training(framework: str, seed: int) -> Iterator[None]:
    """Deterministic, seeded, and (torch) on one thread, as the recipes train."""
    threads = None
    if framework == "torch":
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
    try:
        with deterministic(framework, seed, restore_generators=True):
            yield
    finally:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)


def _layout_x(framework: str, x: np.ndarray) -> np.ndarray:
    return x if framework == "torch" else from_nchw(x, "NHWC")


# -- ART classifiers of a fresh recipe network (call inside _training) -------------------------
def _torch_classifier(recipe: Recipe, temperature: float | None) -> tuple[Any, Any, dict[str, Any]]:
    import torch
    from art.estimators.classification import PyTorchClassifier

    t = 1.0 if temperature is None else temperature

    class Temperature(torch.nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return z / t

    class ProbabilityCrossEntropy(torch.nn.Module):
        """Cross-entropy of probability outputs against (soft) probability labels."""

        def forward(self, p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return -(y * torch.log(p.clamp_min(1e-30))).sum(1).mean()

    net = torch_build(recipe)
    head = temperature is not None
    clf = PyTorchClassifier(
        model=torch.nn.Sequential(net, Temperature(), torch.nn.Softmax(dim=1)) if head else net,
        loss=ProbabilityCrossEntropy() if head else torch.nn.CrossEntropyLoss(),
        optimizer=torch.optim.Adam(net.parameters(), lr=recipe.lr),
        input_shape=recipe.input_shape,
        nb_classes=recipe.nb_classes,
        clip_values=CLIP,
        channels_first=True,
        device_type="cpu",
    )
    info = {
        "class": "art.estimators.classification.PyTorchClassifier",
        "model": f"recipe network -> z / {temperature} -> softmax" if head else "recipe network (logits)",
        "loss": "-(y * log(p)).sum(1).mean() (p clamped at 1e-30)" if head else "torch.nn.CrossEntropyLoss()",
        "optimizer": f"torch.optim.Adam(lr={recipe.lr})",
        "input_shape": list(recipe.input_shape),
        "clip_values": list(CLIP),
        "channels_first": True,
        "device_type": "cpu",
    }
    return net, clf, info


def _keras_classifier(recipe: Recipe, temperature: float | None) -> tuple[Any, Any, dict[str, Any]]:
    import keras
    import tensorflow as tf
    from art.estimators.classification import TensorFlowV2Classifier

    net = keras_build(recipe)
    head = temperature is not None
    model = net
    if temperature is not None:
        model = keras.Sequential(
            [
                keras.Input(net.input_shape[1:]),
                net,
                keras.layers.Rescaling(1.0 / temperature),
                keras.layers.Softmax(),
            ]
        )
    loss = keras.losses.CategoricalCrossentropy(from_logits=not head)
    opt = keras.optimizers.Adam(recipe.lr, epsilon=1e-8)  # the recipe's optimizer
    opt.build(model.trainable_variables)

    @tf.function(reduce_retracing=True)
    def train_step(m: Any, images: tf.Tensor, labels: tf.Tensor) -> None:
        with tf.GradientTape() as tape:
            value = loss(labels, m(images, training=True))
        opt.apply_gradients(
            zip(tape.gradient(value, m.trainable_variables), m.trainable_variables, strict=True)
        )

    input_shape = shape_in("NHWC", recipe.input_shape)
    clf = TensorFlowV2Classifier(
        model=model,
        nb_classes=recipe.nb_classes,
        input_shape=input_shape,
        loss_object=loss,
        optimizer=opt,
        train_step=train_step,
        channels_first=False,
        clip_values=CLIP,
    )
    info = {
        "class": "art.estimators.classification.TensorFlowV2Classifier",
        "model": f"recipe network -> Rescaling(1/{temperature}) -> Softmax"
        if head
        else "recipe network (logits)",
        "loss_object": f"keras.losses.CategoricalCrossentropy(from_logits={not head})",
        "optimizer": f"keras.optimizers.Adam({recipe.lr}, epsilon=1e-8)",
        "train_step": "ours, compiled once: tape over loss_object(labels, model(x, training=True)), "
        "optimizer.apply_gradients (ART's default is re-traced on every fit call)",
        "input_shape": list(input_shape),
        "clip_values": list(CLIP),
        "channels_first": False,
    }
    return net, clf, info


CLASSIFIERS: dict[str, Callable[[Recipe, float | None], tuple[Any, Any, dict[str, Any]]]] = {
    "torch": _torch_classifier,
    "tensorflow": _keras_classifier,
}


# -- trainers -------------------------------------------------------------------------------
@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """ART's ``AdversarialTrainer`` draws tqdm bars with no option to turn them off (and
    tqdm reads its ``TQDM_DISABLE`` variable only when imported): for the block, the
    trainer's module gets ``tqdm``/``trange`` with ``disable=True``."""
    import functools
    from unittest import mock

    import art.defences.trainer.adversarial_trainer as module

    with (
        mock.patch.object(module, "tqdm", functools.partial(module.tqdm, disable=True)),
        mock.patch.object(module, "trange", functools.partial(module.trange, disable=True)),
    ):
        yield


#: Adversarial-training methods that take one step.
ONE_STEP = ("fgsm", "fgsm_rs")
METHOD_NOTES = {
    "fgsm": "FGSM (Goodfellow et al. 2015) = ART PGD with max_iter=1, num_random_init=0: one signed "
    "step of eps_step from the clean input",
    "fgsm_rs": "FGSM with random start = ART PGD with max_iter=1, num_random_init=1: "
    "FastGradientMethod(num_random_init=1) steps by eps whatever eps_step is; "
    "AdversarialTrainerFBFPyTorch is torch-only, has no ratio and its own cyclic lr",
    "pgd": "PGD (Madry et al.): random start, max_iter steps of eps_step, projected",
}


def _adversarial_training(
    recipe: Recipe, framework: str, train: Dataset, p: Mapping[str, Any]
) -> tuple[Any, dict[str, Any]]:
    from art.attacks.evasion import ProjectedGradientDescent
    from art.defences.trainer import AdversarialTrainer

    attack_kwargs = {
        "norm": "inf",
        "eps": float(p["eps"]),
        "eps_step": float(p["step_size"]),
        "max_iter": 1 if p["method"] in ONE_STEP else int(p["steps"]),
        "targeted": False,
        "num_random_init": 0 if p["method"] == "fgsm" else 1,
        "batch_size": recipe.batch_size,
        "random_eps": False,
        "summary_writer": False,
        "verbose": False,
    }
    fit_kwargs = {"batch_size": recipe.batch_size, "nb_epochs": recipe.epochs}
    with _training(framework, recipe.seed), _no_progress_bars():
        net, clf, clf_info = CLASSIFIERS[framework](recipe, None)
        attack = ProjectedGradientDescent(clf, **attack_kwargs)
        AdversarialTrainer(clf, attacks=attack, ratio=float(p["ratio"])).fit(
            _layout_x(framework, train.x), train.y, **fit_kwargs
        )
    impl = "PyTorch" if framework == "torch" else "TensorFlowV2"
    return net, {
        "trainer": {
            "class": "art.defences.trainer.AdversarialTrainer",
            "kwargs": {"ratio": float(p["ratio"])},
        },
        "fit": fit_kwargs,
        "attack": {
            "class": "art.attacks.evasion.ProjectedGradientDescent",
            "implementation": f"art.attacks.evasion.ProjectedGradientDescent{impl}",
            "kwargs": attack_kwargs,
        },
        "estimator": clf_info,
        "note": METHOD_NOTES[p["method"]],
    }


def _gaussian_augmentation(
    recipe: Recipe, framework: str, train: Dataset, p: Mapping[str, Any]
) -> tuple[Any, dict[str, Any]]:
    from art.defences.preprocessor import GaussianAugmentation

    kwargs = {
        "sigma": float(p["sigma"]),
        "augmentation": True,
        "ratio": float(p["ratio"]),
        "clip_values": list(CLIP),
        "apply_fit": True,
        "apply_predict": False,
    }
    with deterministic(framework, recipe.seed, restore_generators=True):  # ART draws from NumPy
        x, y = GaussianAugmentation(**{**kwargs, "clip_values": CLIP})(train.x, train.y)
    assert y is not None
    net = BACKENDS[framework].train(recipe, dataclasses.replace(train, x=x, y=y))
    return net, {
        "preprocessor": {"class": "art.defences.preprocessor.GaussianAugmentation", "kwargs": kwargs},
        "n_train_augmented": len(x),
        "training": "the recipe's own loop on the augmented training set",
    }


def _label_smoothing(
    recipe: Recipe, framework: str, train: Dataset, p: Mapping[str, Any]
) -> tuple[Any, dict[str, Any]]:
    from art.defences.preprocessor import LabelSmoothing

    kwargs = {"max_value": float(p["max_value"]), "apply_fit": True, "apply_predict": False}
    one_hot = np.eye(recipe.nb_classes, dtype=np.float32)[train.y]
    _, y = LabelSmoothing(**kwargs)(train.x, one_hot)
    assert y is not None
    net = BACKENDS[framework].train(recipe, dataclasses.replace(train, y=y.astype(np.float32)))
    return net, {
        "preprocessor": {"class": "art.defences.preprocessor.LabelSmoothing", "kwargs": kwargs},
        "training": "the recipe's own loop, cross-entropy against the smoothed (soft) labels",
    }


def _distillation(
    recipe: Recipe, framework: str, train: Dataset, p: Mapping[str, Any]
) -> tuple[Any, dict[str, Any]]:
    from art.defences.transformer.evasion import DefensiveDistillation

    t = float(p["temperature"])
    fit_kwargs = {"batch_size": recipe.batch_size, "nb_epochs": recipe.epochs}
    x = _layout_x(framework, train.x)
    with _training(framework, recipe.seed):
        _, teacher, teacher_info = CLASSIFIERS[framework](recipe, t)
        teacher.fit(x, np.eye(recipe.nb_classes, dtype=np.float32)[train.y], **fit_kwargs)
        net, student, student_info = CLASSIFIERS[framework](recipe, t)
        DefensiveDistillation(teacher, **fit_kwargs)(x, transformed_classifier=student)
    return net, {
        "transformer": {
            "class": "art.defences.transformer.evasion.DefensiveDistillation",
            "kwargs": fit_kwargs,
        },
        "teacher": {**teacher_info, "fit": {**fit_kwargs, "labels": "one-hot"}},
        "student": student_info,
        "deployed": "the student's network without the softmax(z / T) head: raw logits (T = 1)",
    }


def _bounded_relu(
    recipe: Recipe, framework: str, train: Dataset, p: Mapping[str, Any]
) -> tuple[Any, dict[str, Any]]:
    net = BACKENDS[framework].train(recipe, train)
    layer = "torch.nn.Hardtanh(0, cap)" if framework == "torch" else "keras.layers.ReLU(max_value=cap)"
    return net, {
        "used": None,
        "reason": "ART has no bounded-ReLU defence: an architecture change, made here",
        "activation": layer,
        "training": "the recipe's own loop",
    }


def bounded_layers(recipe: Recipe, cap: float) -> Recipe:
    """``recipe`` with every ReLU replaced by the bounded ReLU ``min(max(0, x), cap)``."""
    layers = tuple(("brelu", float(cap)) if layer == ("relu",) else layer for layer in recipe.layers)
    return dataclasses.replace(recipe, layers=layers)


TRAINERS: dict[str, Trainer] = {
    "adversarial_training": _adversarial_training,
    "gaussian_augmentation": _gaussian_augmentation,
    "label_smoothing": _label_smoothing,
    "distillation": _distillation,
    "bounded_relu": _bounded_relu,
}
