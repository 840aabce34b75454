"""The ``noise`` baseline (Foolbox repeated additive noise): runs in torch and TF, stays in
the eps-ball, records its explicit parameters, returns the first successful draw, is
unsupported where the libraries lack it, and succeeds less often than PGD on a trained model
(Carlini et al. 2019: random noise of the right norm must lose to white-box attacks)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from conftest import to_layout

from advharness.adapters.foolbox.noise import CLASSES, linf_uniform_class
from advharness.execution.api import run_attacks
from advharness.zoo.data import load_dataset
from advharness.zoo.recipes import load_recipe

EPS = {"linf": 0.3, "l2": 3.0}
DRAWS = 10


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    ds = load_dataset("digits", "test", n_samples=64)
    return ds.x, ds.y


@pytest.fixture(scope="module", params=["torch", "tensorflow"])
def trained(request):  # type: ignore[no-untyped-def]
    return load_recipe("digits_mlp", request.param)


def test_noise_runs_in_the_ball_and_records_its_call(trained, digits) -> None:  # type: ignore[no-untyped-def]
    """Each supported (norm, distribution) in both frameworks, decision-based (the default):
    outputs inside the eps-ball and the box, the library call explicit, queries exact (the
    first successful draw ends a sample's attack: one more query, Foolbox's final check)."""
    x, y = digits[0][:8], digits[1][:8]
    # per sample: a sample's attack ends at its first successful draw (batched, Foolbox draws
    # for the whole batch until every sample has one)
    specs = [
        {
            "attack": "noise",
            "norm": norm,
            "eps": EPS[norm],
            "params": {"distribution": dist, "draws": DRAWS},
            "query_mode": "per-sample",
        }
        for norm, dist in CLASSES
    ]
    res = run_attacks([trained], x, y, specs, ["foolbox"], return_adversarials=True)
    assert (res.summary["status"] == "ok").all(), res.summary["reason"].tolist()
    assert res.adversarials is not None
    xm = to_layout(x, trained.layout)
    for _, row in res.summary.iterrows():
        assert row["threat_model"] == "decision-based"
        norm, dist = row["norm"], row["param_distribution"]
        delta = (res.adversarials[row["cell"]] - xm).reshape(len(x), -1).astype(np.float64)
        size = np.abs(delta).max(axis=1) if norm == "linf" else np.linalg.norm(delta, axis=1)
        assert size.max() <= EPS[norm] * (1 + 1e-6), (norm, dist)
        assert res.adversarials[row["cell"]].min() >= 0 and res.adversarials[row["cell"]].max() <= 1
        assert row["n_eps_violations"] == 0 and row["n_box_violations"] == 0
        call = json.loads(row["library_call"])
        assert call["kwargs"] == {"repeats": DRAWS, "check_trivial": False}
        assert call["call_kwargs"]["epsilons"] == EPS[norm]
        assert call["callable"].endswith(CLASSES[(norm, dist)])
        rec = res.records[(res.records["cell"] == row["cell"]) & res.records["correct"]]
        won = rec["success"].to_numpy()
        q = rec["queries"].to_numpy()
        assert (q[won] == rec.loc[rec["success"], "first_success_query"].to_numpy() + 1).all()
        assert (q[~won] == DRAWS + 1).all()
        # a draw that fooled the model is returned as drawn: norm eps (L-inf: unless clipped)
        if norm == "l2":
            assert np.allclose(rec.loc[rec["success"], "l2"], EPS["l2"], rtol=1e-4)


def test_linf_gaussian_and_other_libraries_are_unsupported_rows(torch_model, image_batch) -> None:  # type: ignore[no-untyped-def]
    x, _ = image_batch
    y = torch_model.predict(x[:2])
    specs = [
        {"attack": "noise", "norm": "linf", "eps": 0.1, "params": {"distribution": "gaussian"}},
        {"attack": "noise", "norm": "l2", "eps": 1.0},
    ]
    res = run_attacks([torch_model], x[:2], y, specs, ["art", "foolbox", "cleverhans"])
    s: Any = res.summary.set_index(["library", "norm"])
    assert s.loc[("foolbox", "linf"), "status"] == "unsupported"
    assert "no L-inf Gaussian noise" in s.loc[("foolbox", "linf"), "reason"]
    assert s.loc[("foolbox", "l2"), "status"] == "ok"
    for lib in ("art", "cleverhans"):
        assert (s.loc[lib, "status"] == "unsupported").all()
        assert s.loc[lib, "reason"].str.contains("has no noise attack").all()


def test_foolbox_linf_noise_overshoots_eps() -> None:
    """Backs the workaround: Foolbox's own L-inf scaling divides by max(p), so a draw whose
    most negative coordinate is below -max(p) leaves the ball; the adapter's subclass does not."""
    import eagerpy as ep
    import foolbox
    import torch

    torch.manual_seed(0)
    p = ep.astensor(torch.rand(64, 10) * 2 - 1)
    x = ep.astensor(torch.full((64, 10), 0.5))
    ours = linf_uniform_class()(repeats=1, check_trivial=False)
    theirs = foolbox.attacks.LinfRepeatedAdditiveUniformNoiseAttack(repeats=1, check_trivial=False)
    size = {
        name: (attack.get_epsilons(x, p, 0.1, 0.0, 1.0) * p).abs().max(axis=-1).raw
        for name, attack in (("ours", ours), ("theirs", theirs))
    }
    assert torch.allclose(size["ours"], torch.full((64,), 0.1))
    assert (size["theirs"] > 0.1 * (1 + 1e-4)).any()


def test_noise_succeeds_less_than_pgd(digits) -> None:  # type: ignore[no-untyped-def]
    """On a trained model, at the same eps: 100 noise draws fool fewer samples than PGD."""
    x, y = digits
    model = load_recipe("digits_mlp", "torch")
    specs = [
        {"attack": "noise", "eps": 0.2, "params": {"draws": 100}},
        {"attack": "pgd", "eps": 0.2, "steps": 20},
    ]
    res = run_attacks([model], x, y, specs, ["foolbox"])
    rate = res.summary.set_index("attack")["success_rate"]
    assert rate["noise"] < 0.5 < rate["pgd"], rate.to_dict()
    assert rate["pgd"] - rate["noise"] > 0.3
    assert not res.summary["beats_white_box"].any()
