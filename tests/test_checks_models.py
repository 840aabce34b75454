"""The sanity checks on real attacks against small torch models (the digits MLP recipe): a
gradient-masking model, a C&W with too few steps, a PGD too short to beat FGSM, and a sound
evaluation that raises nothing. Margins are wide (tens of samples), so the verdicts do not
hang on float kernels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from advharness.analytics import sanity_checks
from advharness.execution.api import run_attacks
from advharness.models.base import WrappedModel
from advharness.models.torch_model import TorchModel
from advharness.zoo.data import load_dataset
from advharness.zoo.recipes import load_recipe


@pytest.fixture(scope="module")
def digits() -> tuple[WrappedModel, np.ndarray, np.ndarray]:
    """The trained digits MLP (torch) and 48 test images."""
    ds = load_dataset("digits", n_samples=48, split="test")
    return load_recipe("digits_mlp", "torch"), ds.x, ds.y


def _keys(summary: pd.DataFrame, attack: str) -> set[str]:
    return set(summary.loc[summary["attack"] == attack, "cell_key"].astype(str))


def _value(summary: pd.DataFrame, attack: str, column: str) -> Any:
    """``column`` of the one row of ``attack``."""
    (value,) = summary.loc[summary["attack"] == attack, column].tolist()
    return value


def _flagged(checks: pd.DataFrame, name: str, column: str = "cell_keys") -> list[tuple[str, ...]]:
    return [tuple(k) for k in checks.loc[checks["check"] == name, column]]


def test_black_box_beats_white_box_on_a_gradient_masking_model(digits: Any) -> None:
    import torch

    model, x, y = digits

    class Quantize(torch.nn.Module):
        """Inputs rounded to quarters: the forward pass is fine, the input gradient is 0."""

        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return torch.round(v * 4) / 4

    masked = TorchModel(
        torch.nn.Sequential(Quantize(), model.module),
        input_shape=(1, 8, 8),
        nb_classes=10,
        bounds=(0.0, 1.0),
        name="masked",
    )
    probe = torch.tensor(x[:4], requires_grad=True)
    masked.module(probe).sum().backward()
    assert probe.grad is not None and not probe.grad.any()  # the gradients vanish
    res = run_attacks(
        [masked],
        x,
        y,
        [{"attack": "fgsm", "eps": 0.2}, {"attack": "square", "eps": 0.2, "steps": 100, "budget": 100}],
        ["art"],
    )
    s = res.summary
    assert (s["status"] == "ok").all() and _value(s, "fgsm", "clean_accuracy") > 0.8
    assert _value(s, "fgsm", "success_rate") == 0.0 and _value(s, "square", "success_rate") > 0.15
    checks = sanity_checks(s, res.records)
    square, fgsm = _value(s, "square", "cell_key"), _value(s, "fgsm", "cell_key")
    for name in ("weaker_access_beats_white_box_samples", "weaker_access_beats_white_box_rate"):
        assert _flagged(checks, name) == [(square,)], name
        assert _flagged(checks, name, "reference_keys") == [(fgsm,)], name
    (samples,) = _flagged(checks, "weaker_access_beats_white_box_samples", "samples")
    assert len(samples) == round(_value(s, "square", "success_rate") * _value(s, "square", "n_correct"))
    assert _value(s, "square", "beats_white_box")


def test_a_carlini_wagner_with_too_few_steps_next_to_deepfool(digits: Any) -> None:
    res = run_attacks(
        [digits[0]],
        digits[1],
        digits[2],
        [
            {"attack": "deepfool", "steps": 50},
            {"attack": "cw", "steps": 3, "params": {"binary_search_steps": 1}},
        ],
        ["art", "foolbox"],
    )
    s = res.summary
    assert (s["status"] == "ok").all()
    checks = sanity_checks(s, res.records)
    cw, deepfool = _keys(s, "cw"), _keys(s, "deepfool")
    failed = set(s.loc[(s["attack"] == "cw") & (s["success_rate"] < 1), "cell_key"])
    assert failed and (s.loc[s["attack"] == "deepfool", "success_rate"] == 1).all()
    assert {k for (k,) in _flagged(checks, "minimum_norm_below_100")} == failed
    dominated = zip(
        _flagged(checks, "minimum_norm_dominated"),
        _flagged(checks, "minimum_norm_dominated", "reference_keys"),
        strict=True,
    )
    assert {a for (a,), (b,) in dominated if b in deepfool} == cw  # each C&W by a DeepFool
    assert not {k for (k,) in _flagged(checks, "minimum_norm_dominated")} & deepfool


def test_fgsm_beating_a_too_short_pgd(digits: Any) -> None:
    res = run_attacks(
        [digits[0]],
        digits[1],
        digits[2],
        [
            {"attack": "fgsm", "eps": 0.1},
            {"attack": "pgd", "eps": 0.1, "steps": 1, "step_size": 0.001, "random_start": False},
        ],
        ["art"],
    )
    s = res.summary
    assert _value(s, "fgsm", "success_rate") > 0.3 and _value(s, "pgd", "success_rate") < 0.05
    checks = sanity_checks(s, res.records)
    for name in ("single_step_beats_iterative_samples", "single_step_beats_iterative_rate"):
        assert _flagged(checks, name) == [(_value(s, "pgd", "cell_key"),)]  # the PGD is too weak
        assert _flagged(checks, name, "reference_keys") == [(_value(s, "fgsm", "cell_key"),)]
    assert set(checks["check"]) == {"single_step_beats_iterative_samples", "single_step_beats_iterative_rate"}


def test_a_sound_evaluation_raises_no_flag(digits: Any) -> None:
    res = run_attacks(
        [digits[0]],
        digits[1],
        digits[2],
        [
            {"attack": "fgsm", "eps": [0.05, 0.1, 0.2]},
            {"attack": "pgd", "eps": [0.05, 0.1, 0.2], "steps": 40, "step_size": 0.01},
            {"attack": "deepfool", "steps": 50, "eps": [0.5, 1.0]},
        ],
        ["art", "foolbox"],
    )
    s = res.summary
    assert (s["status"] == "ok").all() and s["clean_accuracy"].min() > 0.8
    checks = sanity_checks(s, res.records)
    assert checks.empty, checks["message"].tolist()
