"""Bad models and inputs are refused before any attack runs, with one line naming the model:
non-finite outputs, a forward pass that raises, an empty or ragged batch, something that is
not a model. A float64 torch network is run in its own dtype behind a float32 face."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import torch

from advharness.core.errors import HarnessError
from advharness.execution.api import prepare, run_attacks
from advharness.models.base import WrappedModel
from advharness.models.wrap import wrap_model

FGSM = [{"attack": "fgsm", "eps": 0.1}]


def _data(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, (n, 1, 4, 4)).astype(np.float32), np.arange(n) % 3


def _linear() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))


class _InfWhereDark(torch.nn.Module):
    """Finite logits, except inf on the samples whose first pixel is below 0.5."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _linear()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.net(x) / (x.flatten(1)[:, :1] >= 0.5))


def _nonfinite(framework: str) -> WrappedModel:
    if framework == "torch":
        return wrap_model(_InfWhereDark(), input_shape=(1, 4, 4), nb_classes=3, name="nanny")
    import keras

    net = keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(3, kernel_initializer=keras.initializers.Constant(float("nan"))),
        ]
    )
    return wrap_model(net, input_shape=(16,), nb_classes=3, name="nanny")


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_nonfinite_outputs_are_refused_naming_the_model(framework: str) -> None:
    x, y = _data()
    dark = int((x[:, 0, 0, 0] < 0.5).sum())
    assert 0 < dark < len(x)  # the torch model is finite on some samples, not all
    model = _nonfinite(framework)
    for call in (
        lambda: prepare(model, x, y),
        lambda: run_attacks([model], x, y, FGSM, ["art", "foolbox", "cleverhans"]),
    ):
        with pytest.raises(HarnessError) as e:
            call()
        msg = str(e.value)
        assert "\n" not in msg and "model 'nanny' returned NaN or inf outputs" in msg
        assert f"for {dark if framework == 'torch' else len(x)} of {len(x)} clean inputs" in msg


FACTORY = """\
import torch


class InfNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.lin(x.flatten(1)) * float("inf")


def make():
    return InfNet()
"""


def test_nonfinite_factory_model_refuses_the_experiment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from advharness.config.experiment import parse_experiment
    from advharness.execution.orchestrate import run_experiment

    (tmp_path / "advh_inf_factory.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "advh_inf_factory", raising=False)
    exp = parse_experiment(
        {
            "name": "inf",
            "data": {"dataset": "digits", "n_samples": 4},
            "libraries": ["art"],
            "models": [
                {
                    "factory": "advh_inf_factory:make",
                    "framework": "torch",
                    "name": "blown",
                    "input_shape": [1, 8, 8],
                    "nb_classes": 10,
                }
            ],
            "attacks": FGSM,
        }
    )
    with pytest.raises(HarnessError) as e:
        run_experiment(exp, out_dir=tmp_path / "out", backend="inline")
    assert "\n" not in str(e.value) and "model 'blown' returned NaN or inf" in str(e.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16], ids=str)
def test_torch_network_of_another_dtype_runs_in_it_behind_float32(dtype: torch.dtype) -> None:
    """Every library sees float32 inputs and outputs; the network computes in its dtype."""
    x, y = _data()
    net = _linear().to(dtype)
    seen: list[torch.dtype] = []
    net.register_forward_pre_hook(lambda m, args: seen.append(args[0].dtype))
    model = wrap_model(net, input_shape=(1, 4, 4), nb_classes=3, name="double")
    res = run_attacks(
        [model], x, y, [*FGSM, {"attack": "pgd", "eps": 0.1, "steps": 3}], ["art", "foolbox", "cleverhans"]
    )
    assert res.summary["status"].tolist() == ["ok"] * 6, res.summary["reason"].tolist()
    assert set(seen) == {dtype} and next(net.parameters()).dtype == dtype
    with torch.no_grad():
        own = net(torch.from_numpy(x).to(dtype)).argmax(1).numpy()
    np.testing.assert_array_equal(res.summary["clean_accuracy"], np.mean(own == y))
    out = model.counted(torch.from_numpy(x))
    assert out.dtype == torch.float32
    as_float32 = wrap_model(_linear(), input_shape=(1, 4, 4), nb_classes=3, name="double")
    assert model.parameter_hash() != as_float32.parameter_hash()


def test_forward_that_raises_is_one_line_naming_the_model() -> None:
    class Broken(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("shapes do not match\nsecond line of the message")

    x, y = _data()
    with pytest.raises(HarnessError) as e:
        run_attacks(
            [wrap_model(Broken(), input_shape=(1, 4, 4), nb_classes=3, name="broken")], x, y, FGSM, ["art"]
        )
    assert str(e.value) == (
        "model 'broken': forward pass on the clean inputs failed (RuntimeError: shapes do not match)"
    )


def test_empty_batch_is_refused_as_empty() -> None:
    x, y = _data()
    model = wrap_model(_linear(), input_shape=(1, 4, 4), nb_classes=3, name="lin")
    for call in (
        lambda: run_attacks([model], x[:0], y[:0], FGSM, ["art"]),
        lambda: model.check_outputs(x[:0]),
    ):
        with pytest.raises(HarnessError) as e:
            call()
        assert str(e.value) == "inputs for model 'lin' are an empty batch (0 samples)"


def test_nested_lists_are_taken_ragged_ones_refused() -> None:
    x, y = _data()
    model = wrap_model(_linear(), input_shape=(1, 4, 4), nb_classes=3, name="lin")
    as_arrays = run_attacks([model], x, y, FGSM, ["foolbox"]).summary
    as_lists = run_attacks([model], x.tolist(), y.tolist(), FGSM, ["foolbox"]).summary
    cols = ["status", "clean_accuracy", "robust_accuracy", "median_linf"]
    assert as_arrays["status"].tolist() == ["ok"]
    assert as_lists[cols].equals(as_arrays[cols])
    ragged: Any = [x[0].tolist(), x[1, :, :2].tolist()]
    with pytest.raises(HarnessError) as e:
        run_attacks([model], ragged, y[:2], FGSM, ["foolbox"])
    assert "\n" not in str(e.value)
    assert str(e.value).startswith("inputs for model 'lin' are not a numeric array of one shape")
    with pytest.raises(HarnessError, match="labels are not an array of one shape"):
        run_attacks([model], x[:2], [[0], [1, 2]], FGSM, ["foolbox"])  # type: ignore[arg-type]


@pytest.mark.parametrize("thing", [object(), "model.pt", lambda x: x])
def test_wrap_model_refuses_what_is_not_a_model(thing: Any) -> None:
    import keras  # noqa: F401  (loaded: the TF branch must not take any object)

    with pytest.raises(HarnessError) as e:
        wrap_model(thing, input_shape=(1, 4, 4), nb_classes=3)
    assert str(e.value).startswith(f"cannot wrap a {type(thing).__module__}.")
    assert "expected a torch.nn.Module or a Keras model" in str(e.value)
