"""Helpers every ART attack shares: estimators around the counted model, and the call."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from advharness.adapters.base import AttackOutput, AttackRequest, LibraryCall
from advharness.models.base import WrappedModel


def torch_estimator(model: WrappedModel, net: Any = None) -> Any:
    import torch
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=model.counted if net is None else net,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=model.input_shape,
        nb_classes=model.nb_classes,
        clip_values=model.bounds,
        channels_first=(model.layout == "NCHW"),
        device_type="cpu" if model.device == "cpu" else "gpu",
    )


def tf_estimator(model: WrappedModel, net: Any = None) -> Any:
    import keras
    from art.estimators.classification import TensorFlowV2Classifier

    est = TensorFlowV2Classifier(
        model=model.counted if net is None else net,
        nb_classes=model.nb_classes,
        input_shape=model.input_shape,
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        clip_values=model.bounds,
        channels_first=False,
    )
    if net is None and model.access != "white-box":
        # a query-only oracle: keep ART's compiled model call, but let the oracle's ledger
        # run in Python after it rather than behind a tf.py_function inside ART's graph
        est._forward_pass = model.counted.compiled_forward(est._forward_pass)
    return est


CONVERTERS: dict[str, Callable[..., Any]] = {
    "torch": torch_estimator,
    "tensorflow": tf_estimator,
}


@contextmanager
def quiet_tf(framework: str) -> Iterator[None]:
    """Mute TensorFlow's own warnings that ART's TF2 code triggers (retracing, persistent tape)."""
    log = logging.getLogger("tensorflow")
    level = log.level
    if framework == "tensorflow":
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def one_hot(labels: np.ndarray, nb_classes: int) -> np.ndarray:
    return np.eye(nb_classes, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]


def generate(
    request: AttackRequest,
    cls_name: str,
    kwargs: dict[str, Any],
    notes: list[str],
    *,
    pass_y: bool = True,
    estimator: Any = None,
) -> AttackOutput:
    """Build ``art.attacks.evasion.<cls_name>(estimator, **kwargs)``, run it and record it.

    ``estimator`` defaults to the cached ``model_form`` (built on ``model.counted``).
    """
    import art.attacks.evasion as evasion

    model, spec = request.model, request.spec
    if estimator is None:
        estimator = model.library_form("art", lambda: CONVERTERS[model.framework](model))
    extra = spec.options_for("art")
    kwargs = {**kwargs, **extra}
    if extra:
        notes = [*notes, f"library_options['art'] merged last: {sorted(extra)}"]
    cls = getattr(evasion, cls_name)
    est_name = list(inspect.signature(cls.__init__).parameters)[1]  # "estimator"/"classifier"
    with quiet_tf(model.framework):
        attack = cls(estimator, **kwargs)
    inner = getattr(attack, "_attack", None)
    if inner is not None:
        notes = [*notes, f"ART dispatched {cls_name} to {type(inner).__name__}"]
    x = np.ascontiguousarray(request.x, dtype=np.float32)
    call_kwargs: dict[str, Any] = {"y": None}
    y = None
    if pass_y:
        labels = request.targets if spec.targeted else request.y
        if labels is None:
            raise ValueError("a targeted request needs targets")
        y = one_hot(labels, model.nb_classes)
        call_kwargs = {"y": "targets" if spec.targeted else "labels"}
        notes = [*notes, "y passed one-hot (float32)"]
    call = request.announce(
        LibraryCall(
            callable=f"art.attacks.evasion.{cls_name}",
            kwargs={est_name: "<estimator>", **kwargs},
            call_kwargs=call_kwargs,
            notes=notes,
        )
    )
    with quiet_tf(model.framework):
        x_adv = attack.generate(x=x, y=y)
    return AttackOutput(np.asarray(x_adv, dtype=np.float32), call)
