"""Query counting is exact: every library's queries go through the counting wrapper."""

from __future__ import annotations

from typing import cast

import pytest

from advharness.adapters import get_adapter
from advharness.adapters.base import AttackRequest
from advharness.config.spec import AttackSpec
from advharness.models.layout import to_layout


class SelfCounting:
    """Builds models that count the rows they see themselves, independently of the harness."""

    @staticmethod
    def torch():  # type: ignore[no-untyped-def]
        import torch

        from advharness.models.torch_model import TorchModel

        class Net(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                torch.manual_seed(0)
                self.lin = torch.nn.Linear(28 * 28, 10)
                self.rows = 0

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                self.rows += int(x.shape[0])
                return cast(torch.Tensor, self.lin(x.flatten(1)))

        net = Net()
        return TorchModel(net, input_shape=(1, 28, 28), nb_classes=10), lambda: net.rows

    @staticmethod
    def tensorflow():  # type: ignore[no-untyped-def]
        import keras
        import tensorflow as tf

        from advharness.models.tf_model import TFModel

        seen = tf.Variable(0, dtype=tf.int64)
        keras.utils.set_random_seed(0)
        dense = keras.layers.Dense(10)

        class Net(keras.Model):
            def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
                seen.assign_add(tf.cast(tf.shape(x)[0], tf.int64))
                return dense(tf.reshape(x, (-1, 28 * 28)))

        net = Net()
        net(tf.zeros((1, 28, 28, 1)))
        seen.assign(0)
        return TFModel(net, input_shape=(28, 28, 1), nb_classes=10), lambda: int(seen.numpy())


CASES = [
    (lib, fw, attack)
    for lib in ("art", "foolbox", "cleverhans")
    for fw in ("torch", "tensorflow")
    for attack in ("fgsm", "pgd")
]


@pytest.mark.parametrize("lib,fw,attack", CASES, ids=["-".join(c) for c in CASES])
def test_counts_match_the_models_own_count(image_batch, lib: str, fw: str, attack: str) -> None:  # type: ignore[no-untyped-def]
    model, own_rows = getattr(SelfCounting, fw)()
    x, y = image_batch
    x = to_layout(x[:8], model)
    spec = (
        AttackSpec(attack=attack, eps=0.1, steps=5, step_size=0.02).resolve()
        if attack == "pgd"
        else AttackSpec(attack=attack, eps=0.1).resolve()
    )
    before = own_rows()
    model.counter.reset()
    get_adapter(lib).run(AttackRequest(model, x, y[:8], None, spec, seed=0))
    counts = model.counter.read()
    assert counts.forward == own_rows() - before
    assert spec.steps is not None
    assert counts.backward >= spec.steps * 8  # at least one gradient per step and sample
    if lib == "cleverhans" and attack == "fgsm":  # labels given: exactly one pass each way
        assert (counts.forward, counts.backward) == (8, 8)
