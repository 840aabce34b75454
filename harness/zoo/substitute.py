"""Substitute models for model-extraction ("model-based black-box") transfer attacks.

:func:`train_substitute` trains a fresh network of a built-in recipe's architecture only from
a target's answers to queries, with ART's ``art.attacks.extraction.CopycatCNN``. The target
is reached only through its query-only oracle (``target.counted`` under a ``decision-based``
or ``score-based`` access level, wrapped by the ART adapter), so every query is counted and
no gradient can leak.

Layouts. CopycatCNN sends the *same* array to ``victim.predict`` and to ``thieved.fit``.
Across frameworks (a torch thief of a Keras target, or the reverse) the two layouts differ,
so the thieved estimator is given the target's layout: during extraction the fresh network
is preceded by a parameter-free transpose (NHWC->NCHW for torch, NCHW->NHWC for Keras).
Training on transposed inputs is exactly training the bare network on its own layout, so
CopycatCNN runs unchanged in every case; the bare network (its own layout) is returned.

Scores. With ``use_probability=True`` CopycatCNN fits on ``victim.predict`` verbatim, which
for the harness's estimators are *logits*; used as soft targets by the cross-entropy losses
they make the loss unbounded below. Score-based extraction therefore takes the softmax of
the victim's answers (a subclass overriding ``CopycatCNN._query_label``; recorded).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from advharness.config.catalogue import Recipe
from advharness.core.errors import HarnessError
from advharness.core.seeding import deterministic, seed_everything
from advharness.core.types import ThreatModel
from advharness.models.base import WrappedModel
from advharness.models.layout import shape_in, to_layout
from advharness.zoo.recipes import BACKENDS, get_recipe, keras_build, torch_build

log = logging.getLogger(__name__)

ART_CLASS = "art.attacks.extraction.CopycatCNN"
#: A thief: ``(recipe, target_layout, lr) -> (bare network, ART estimator on target layout, info)``.
Thief = Callable[[Recipe, str, float], tuple[Any, Any, dict[str, Any]]]


# -- thieved classifiers (fresh, untrained; call after seeding) ------------------------------
def _torch_thief(recipe: Recipe, target_layout: str, lr: float) -> tuple[Any, Any, dict[str, Any]]:
    import torch
    from art.estimators.classification import PyTorchClassifier

    class ToNCHW(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.permute(0, 3, 1, 2)

    net = torch_build(recipe)
    nchw = target_layout == "NCHW"
    estimator = PyTorchClassifier(
        model=net if nchw else torch.nn.Sequential(ToNCHW(), net),
        loss=torch.nn.CrossEntropyLoss(),
        optimizer=torch.optim.Adam(net.parameters(), lr=lr),
        input_shape=shape_in(target_layout, recipe.input_shape),
        nb_classes=recipe.nb_classes,
        clip_values=(0.0, 1.0),
        channels_first=nchw,
        device_type="cpu",
    )
    return (
        net,
        estimator,
        {
            "class": "art.estimators.classification.PyTorchClassifier",
            "loss": "torch.nn.CrossEntropyLoss()",
            "optimizer": f"torch.optim.Adam(lr={lr})",
            "layout_adapter": None if nchw else "NHWC->NCHW permute before the network",
        },
    )


def _keras_thief(recipe: Recipe, target_layout: str, lr: float) -> tuple[Any, Any, dict[str, Any]]:
    import keras
    from art.estimators.classification import TensorFlowV2Classifier

    net = keras_build(recipe)
    nhwc = target_layout == "NHWC"
    front = net
    if not nhwc:
        inp = keras.Input(recipe.input_shape)
        front = keras.Model(inp, net(keras.layers.Permute((2, 3, 1))(inp)))
    optimizer = keras.optimizers.Adam(lr)
    optimizer.build(front.trainable_variables)  # variables made here, not inside ART's tf.function
    estimator = TensorFlowV2Classifier(
        model=front,
        nb_classes=recipe.nb_classes,
        input_shape=shape_in(target_layout, recipe.input_shape),
        loss_object=keras.losses.CategoricalCrossentropy(from_logits=True),
        optimizer=optimizer,
        train_step=None,
        channels_first=not nhwc,
        clip_values=(0.0, 1.0),
    )
    return (
        net,
        estimator,
        {
            "class": "art.estimators.classification.TensorFlowV2Classifier",
            "loss": "keras.losses.CategoricalCrossentropy(from_logits=True)",
            "optimizer": f"keras.optimizers.Adam({lr})",
            "train_step": "ART's default",
            "layout_adapter": None if nhwc else "NCHW->NHWC keras.layers.Permute before the network",
        },
    )


THIEVES: dict[str, Thief] = {"torch": _torch_thief, "tensorflow": _keras_thief}


# -- extraction methods ----------------------------------------------------------------------
def _copycat(
    victim: Any, x: np.ndarray, thieved: Any, *, queries: int, epochs: int, batch_size: int, labels_only: bool
) -> dict[str, Any]:
    """``CopycatCNN(victim, ...).extract(x, thieved_classifier=thieved)``; returns what was run."""
    from art.attacks.extraction import CopycatCNN

    class SoftmaxCopycatCNN(CopycatCNN):
        """CopycatCNN fitting on softmax(victim logits) rather than on the raw logits."""

        def _query_label(self, x: np.ndarray) -> np.ndarray:
            z = super()._query_label(x)
            e = np.exp(z - z.max(axis=1, keepdims=True))
            return cast(np.ndarray, (e / e.sum(axis=1, keepdims=True)).astype(np.float32))

    kwargs = {
        "batch_size_fit": batch_size,
        "batch_size_query": batch_size,
        "nb_epochs": epochs,
        "nb_stolen": queries,
        "use_probability": not labels_only,
    }
    cls = CopycatCNN if labels_only else SoftmaxCopycatCNN
    cls(classifier=victim, **kwargs).extract(x, thieved_classifier=thieved)
    return {
        "art_class": ART_CLASS,
        "kwargs": kwargs,
        "label_transform": None
        if labels_only
        else "softmax of the victim's logits (CopycatCNN._query_label overridden)",
    }


METHODS: dict[str, Callable[..., dict[str, Any]]] = {"copycat": _copycat}


def _check(
    method: str,
    recipe: str,
    framework: str,
    target: WrappedModel,
    pool_x: np.ndarray,
    queries: int,
    epochs: int,
    batch_size: int,
    lr: float,
    eval_x: np.ndarray | None,
) -> Recipe:
    """The recipe, or a one-line :class:`HarnessError` naming the first bad argument."""
    if method not in METHODS:
        raise HarnessError(f"unknown substitute method {method!r}; known: {', '.join(sorted(METHODS))}")
    rec, _ = get_recipe(recipe, framework)
    for what, value in (("queries", queries), ("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise HarnessError(f"{what} must be an integer >= 1, got {value!r}")
    if not lr > 0:
        raise HarnessError(f"lr must be > 0, got {lr!r}")
    for what, x in (("pool_x", pool_x), ("eval_x", eval_x)):
        if x is not None and (np.ndim(x) != 4 or tuple(np.shape(x)[1:]) != rec.input_shape):
            raise HarnessError(
                f"{what} must be NCHW images of shape (N, "
                f"{', '.join(map(str, rec.input_shape))}), got {np.shape(x)}"
            )
    if queries > len(pool_x):
        raise HarnessError(f"queries ({queries}) exceed the attacker's pool of {len(pool_x)} images")
    if target.layout not in ("NCHW", "NHWC"):
        raise HarnessError(
            f"target {target.name!r} has layout {target.layout!r}; substitutes need "
            "an image target (NCHW or NHWC)"
        )
    if target.nb_classes != rec.nb_classes:
        raise HarnessError(
            f"recipe {recipe!r} has {rec.nb_classes} classes but target "
            f"{target.name!r} has {target.nb_classes}"
        )
    return rec


def train_substitute(
    target: WrappedModel,
    pool_x: np.ndarray,
    *,
    recipe: str,
    framework: str,
    queries: int,
    method: str = "copycat",
    labels_only: bool = True,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    eval_x: np.ndarray | None = None,
) -> WrappedModel:
    """Train a fresh ``recipe`` network in ``framework`` from ``queries`` answers of ``target``.

    ``pool_x`` (and ``eval_x``) are NCHW float32 images in [0, 1]; ``queries`` of the pool
    are drawn (NumPy's global generator, seeded with ``seed``) and sent to the target's
    decision-based oracle (one-hot top-1 labels; ``labels_only``) or score-based oracle.
    Deterministic for a given ``seed``. The result is a wrapped model with
    ``family = "substitute:<recipe>"`` and a ``substitute_info`` dict recording the run;
    ``agreement`` there is the share of ``eval_x`` on which substitute and target agree
    (``None`` without ``eval_x``; computed by the harness, not counted as queries).
    """
    from advharness.adapters.art.adapter import ArtAdapter
    from advharness.core.frameworks import require_framework

    rec = _check(method, recipe, framework, target, pool_x, queries, epochs, batch_size, lr, eval_x)
    require_framework(framework, f"substitute {recipe!r} ({framework})")
    if framework == "tensorflow":
        from advharness.core.quiet import import_tensorflow

        import_tensorflow()  # before Keras: without TensorFlow's native banner
    access: ThreatModel = "decision-based" if labels_only else "score-based"
    x = to_layout(np.asarray(pool_x, dtype=np.float32), target)
    target.check_inputs(x)
    with target.with_access(access):
        victim = ArtAdapter().model_form(target)
        with deterministic(framework, seed):
            net, thieved, thief_info = THIEVES[framework](rec, target.layout, lr)
            seed_everything(seed)  # CopycatCNN picks its queries with np.random.choice
            target.counter.reset()
            start = time.perf_counter()
            run = METHODS[method](
                victim,
                x,
                thieved,
                queries=int(queries),
                epochs=int(epochs),
                batch_size=int(batch_size),
                labels_only=labels_only,
            )
            train_time = time.perf_counter() - start
        counts = target.counter.read()
        if target.violation is not None:
            raise HarnessError(f"substitute training of {target.name!r}: {target.violation}")
    if counts.forward != queries or counts.backward != 0:
        raise HarnessError(
            f"substitute training sent {counts.forward} forward / {counts.backward} "
            f"backward rows to {target.name!r}; expected exactly {queries} / 0"
        )
    model = BACKENDS[framework].wrap(net, rec)
    model.name, model.family = f"substitute-{recipe}-{framework}", f"substitute:{recipe}"
    agreement = None
    if eval_x is not None:
        ev = np.asarray(eval_x, dtype=np.float32)
        agreement = float(
            np.mean(model.predict(to_layout(ev, model)) == target.predict(to_layout(ev, target)))
        )
    model.substitute_info = {  # type: ignore[attr-defined]
        "method": method,
        **run,
        "thieved_estimator": thief_info,
        "target": target.name,
        "target_framework": target.framework,
        "target_layout": target.layout,
        "access": access,
        "queries_spent": counts.forward,
        "recipe": recipe,
        "framework": framework,
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
        "train_time_s": train_time,
        "agreement": agreement,
        "eval_size": None if eval_x is None else len(eval_x),
    }
    log.info(
        "substitute %s of %s: %d queries (%s), %.1f s, agreement %s",
        model.name,
        target.name,
        counts.forward,
        access,
        train_time,
        agreement,
    )
    return model
