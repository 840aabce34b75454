"""An ensemble of wrapped models: one network whose logits are the mean of its members'.

Torch members become an ``nn.Module`` holding their modules; Keras members a functional
``keras.Model`` calling theirs. Members that declare probability outputs contribute
``log(p)`` (valid logits), as their counting wrappers do. Gradients flow through every member.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from advharness.core.errors import HarnessError
from advharness.models.base import WrappedModel


def check_members(members: Sequence[WrappedModel], name: str) -> None:
    """A one-line :class:`HarnessError` naming the first mismatch among ``members``."""
    if len(members) < 2:
        raise HarnessError(f"ensemble {name!r}: needs at least 2 members, got {len(members)}")
    first = members[0]
    for m in members[1:]:
        for what in ("framework", "input_shape", "layout", "bounds", "nb_classes"):
            a, b = getattr(first, what), getattr(m, what)
            if a != b:
                raise HarnessError(
                    f"ensemble {name!r}: members disagree on {what}: "
                    f"{first.name!r} has {a!r}, {m.name!r} has {b!r}"
                )


def _torch_ensemble(members: Sequence[WrappedModel]) -> Any:
    import torch

    from advharness.models.torch_model import network_dtype

    class LogitAverage(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.members = torch.nn.ModuleList([m.module for m in members])  # type: ignore[attr-defined]
            self.dtypes = [network_dtype(m.module) for m in members]  # type: ignore[attr-defined]
            self.probabilities = [m.outputs == "probabilities" for m in members]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            outs = []
            for net, dtype, probs in zip(self.members, self.dtypes, self.probabilities, strict=True):
                out = net(x.to(dtype)).float()
                outs.append(torch.log(out.clamp_min(1e-30)) if probs else out)
            return torch.stack(outs).mean(0)

    return LogitAverage().eval()  # eval: releasing the wrapper must not put members in training mode


def _keras_ensemble(members: Sequence[WrappedModel], name: str) -> Any:
    import keras

    nets = [m.model for m in members]  # type: ignore[attr-defined]
    for m, net in zip(members, nets, strict=True):
        if not isinstance(net, keras.layers.Layer):
            raise HarnessError(
                f"ensemble {name!r}: member {m.name!r} is a {type(net).__name__}, not a Keras model"
            )
    shape = members[0].input_shape
    inp = keras.Input(shape)
    outs = []
    for i, (m, net) in enumerate(zip(members, nets, strict=True)):
        own = keras.Input(shape)  # each member in a uniquely named model: their names may clash
        out = keras.ops.cast(keras.Model(own, net(own), name=f"member_{i}")(inp), "float32")
        outs.append(keras.ops.log(keras.ops.maximum(out, 1e-30)) if m.outputs == "probabilities" else out)
    model = keras.Model(inp, keras.layers.Average()(outs), name="ensemble")
    model.trainable = False  # releasing the wrapper must not unfreeze the members
    return model


def build_ensemble(members: Sequence[WrappedModel], *, name: str) -> WrappedModel:
    """See :func:`advharness.zoo.trained_defenses.ensemble_model`."""
    check_members(members, name)
    first = members[0]
    kwargs: dict[str, Any] = {
        "input_shape": first.input_shape,
        "nb_classes": first.nb_classes,
        "bounds": first.bounds,
        "layout": first.layout,
        "outputs": "logits",
        "name": name,
    }
    model: WrappedModel
    if first.framework == "torch":
        from advharness.models.torch_model import TorchModel

        model = TorchModel(_torch_ensemble(members), **kwargs)
    else:
        from advharness.models.tf_model import TFModel

        model = TFModel(_keras_ensemble(members, name), **kwargs)
    model.family = name
    model.recipe_info = {  # type: ignore[union-attr]
        "defense": "ensemble",
        "combination": "mean of the members' logits",
        "members": [
            {
                "name": m.name,
                "family": m.family,
                "outputs": m.outputs,
                "recipe_info": getattr(m, "recipe_info", None),
            }
            for m in members
        ],
    }
    return model
