"""``wrap_model``: a PyTorch or Keras/TF model to a :class:`~advharness.models.base.WrappedModel`."""

from __future__ import annotations

import sys
from typing import Any

from advharness.core.errors import HarnessError
from advharness.models.base import WrappedModel


def wrap_model(model: Any, **kwargs: Any) -> WrappedModel:
    """Wrap a ``torch.nn.Module`` or a Keras/TensorFlow model (framework detected by type).

    While wrapped, the network is frozen: torch modules are put in eval mode with
    ``requires_grad=False`` on every parameter, Keras models get ``trainable=False`` (the
    attacks need gradients with respect to the inputs only; weight gradients would be wasted
    work and would accumulate into ``.grad``). ``release()`` - or leaving a
    ``with wrap_model(...) as m:`` block - restores what was found.
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        from advharness.models.torch_model import TorchModel

        return TorchModel(model, **kwargs)
    keras, tf = sys.modules.get("keras"), sys.modules.get("tensorflow")
    if (keras is not None and isinstance(model, keras.layers.Layer)) or (
        tf is not None and isinstance(model, tf.Module)
    ):
        from advharness.models.tf_model import TFModel

        return TFModel(model, **kwargs)
    raise HarnessError(
        f"cannot wrap a {type(model).__module__}.{type(model).__qualname__}: "
        "expected a torch.nn.Module or a Keras model (or tf.Module)"
    )


def rewrap(model: WrappedModel, name: str) -> WrappedModel:
    """A second wrapper of ``model``'s network, with the same shape, layout, bounds, classes
    and outputs (its own counters, library forms and defense attributes)."""
    # TorchModel keeps its network in ``module``, TFModel in ``model``
    net = getattr(model, "module" if model.framework == "torch" else "model", None)
    if net is None:
        raise HarnessError(f"model {model.name!r}: cannot rewrap a {type(model).__name__}")
    return wrap_model(
        net,
        input_shape=model.input_shape,
        nb_classes=model.nb_classes,
        bounds=model.bounds,
        layout=model.layout,
        outputs=model.outputs,
        name=name,
    )
