"""Known optimum: on a linear classifier the minimal L2 perturbation is computable.

For logits f(x) = Wx + b and label y, the region of y is a convex polyhedron, so the
distance to its boundary is min_j (f_y - f_j) / ||w_y - w_j||. DeepFool and C&W L2 must
succeed and land within 1.25x of it, in every library (and framework) that has them.
"""

from __future__ import annotations

import numpy as np
import pytest

from adapters import ADAPTERS
from harness.runner import run_attacks

N, K, H = 12, 4, 28


def _weights() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    w = rng.normal(0, 1, (K, H * H)).astype(np.float32)
    b = rng.normal(0, 1, K).astype(np.float32)
    x = rng.uniform(0.4, 0.6, (N, 1, H, H)).astype(np.float32)
    return w, b, x


def optimum(w: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Exact minimal L2 distance to the decision boundary, and check it stays in [0,1]."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    f = flat @ w.T.astype(np.float64) + b
    y = f.argmax(1)
    best = np.full(len(x), np.inf)
    for i in range(len(x)):
        for j in range(K):
            if j == y[i]:
                continue
            dw = w[y[i]].astype(np.float64) - w[j]
            d = (f[i, y[i]] - f[i, j]) / np.linalg.norm(dw)
            if d < best[i]:
                best[i] = d
                point = flat[i] - d * dw / np.linalg.norm(dw)
                assert 0 <= point.min() and point.max() <= 1, "optimum must lie inside the box"
    return best


def _models():  # type: ignore[no-untyped-def]
    import keras
    import torch

    from harness.tf_model import TFModel
    from harness.torch_model import TorchModel

    w, b, _ = _weights()
    lin = torch.nn.Linear(H * H, K)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w))
        lin.bias.copy_(torch.from_numpy(b))
    tm = TorchModel(torch.nn.Sequential(torch.nn.Flatten(), lin), input_shape=(1, H, H),
                    nb_classes=K, name="linear-torch")
    dense = keras.layers.Dense(K)
    km = keras.Sequential([keras.Input((H, H, 1)), keras.layers.Flatten(), dense])
    dense.set_weights([w.T, b])
    return [tm, TFModel(km, input_shape=(H, H, 1), nb_classes=K, name="linear-tf")]


ATTACKS = {
    "deepfool": {"attack": "deepfool", "norm": "l2", "steps": 50},
    "cw": {"attack": "cw", "steps": 50,
           "params": {"c": 0.01, "learning_rate": 0.01, "binary_search_steps": 9}},
}


@pytest.fixture(scope="module")
def linear_run():  # type: ignore[no-untyped-def]
    w, b, x = _weights()
    y = (x.reshape(N, -1) @ w.T + b).argmax(1)
    res = run_attacks(_models(), x, y, list(ATTACKS.values()), list(ADAPTERS), seed=0)
    return res, optimum(w, b, x)


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_min_norm_attacks_reach_the_optimum(linear_run, attack: str) -> None:  # type: ignore[no-untyped-def]
    res, opt = linear_run
    s = res.summary[res.summary["attack"] == attack]
    ran = s[s["status"] == "ok"]
    # every library with the attack ran it; the others say why not
    assert (s.loc[s["status"] != "ok", "status"] == "unsupported").all(), s[["library", "reason"]]
    assert len(ran) >= 2
    for _, row in ran.iterrows():
        rec = res.records[res.records["cell"] == row["cell"]].sort_values("sample")
        assert rec["success"].all(), (row["library"], row["framework"])
        ratio = rec["l2"].to_numpy() / opt
        assert ratio.max() <= 1.25, (row["library"], row["framework"], ratio.max())
        assert ratio.min() >= 1 - 1e-3, "no attack can beat the exact optimum"
