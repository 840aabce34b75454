"""``search: {eps: ...}``: per-sample eps search (doubling, then bisection) for fixed-budget
attacks, checked against an exact answer, plus its strict validation.

The exact answer: on a two-class linear model (logit difference ``g(x) = dw.x + db``) the
cross-entropy gradient is a positive multiple of ``-dw`` (times the label's sign), so FGSM
moves the margin by exactly ``eps * ||dw||_1`` and FGM by ``eps * ||dw||_2``: the smallest
eps at which they succeed is ``margin / ||dw||_1`` (L-inf) and ``margin / ||dw||_2`` (L2),
as long as the step stays inside the box (checked). The search must bracket it: the
returned ``search_eps`` succeeded, ``search_eps_low`` failed, and the two are the final
bracket width apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from advharness.execution.api import run_attacks

H = 8
D = H * H
START, STEPS = 0.02, 8
#: Exact distances (L-inf; L2 is 4x these) of the attacked samples: some succeed at START,
#: some need one or more doublings, one needs the capped last step, the last one is beyond
#: MAX (hopeless). None is near a point the search tries (a tie is a coin toss).
RADII = np.array([0.0137, 0.0311, 0.0473, 0.0619, 0.1093, 0.1717, 0.2291, 0.31])
MAX = 0.25
L2_SCALE = 4.0


def _linear() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    # small weights: margins of at most ~2 logits, so no float32 softmax saturates (a
    # saturated one rounds the label's term of the gradient away and flips its signs)
    w = rng.normal(0, 0.05, (2, D))
    b = np.array([0.0, float((w[1] - w[0]) @ np.full(D, 0.5))])  # g(0.5) = 0
    return w.astype(np.float32), b.astype(np.float32)


def _dual(dw: np.ndarray, norm: str) -> float:
    """||dw|| in the dual of ``norm``: what one unit of ``norm`` buys the margin."""
    return float(np.abs(dw).sum() if norm == "linf" else np.linalg.norm(dw))


def _batch(w: np.ndarray, b: np.ndarray, radii: np.ndarray, norm: str) -> tuple[np.ndarray, np.ndarray]:
    """Inputs at exact ``norm`` distance ``radii`` from the boundary (labels 0 and 1 in turn),
    then the first one again with the other label (misclassified clean)."""
    dw = (w[0] - w[1]).astype(np.float64)
    db = float(b[0] - b[1])
    # moving along `step` by s changes the margin by s * dual
    step = np.sign(dw) if norm == "linf" else dw / np.linalg.norm(dw)
    rng = np.random.default_rng(4)
    xs, ys = [], []
    for i, r in enumerate(radii):
        label = i % 2
        x0 = 0.5 + rng.uniform(-0.02, 0.02, D)
        want = (1 if label == 0 else -1) * r * _dual(dw, norm)
        xs.append(x0 + (want - (dw @ x0 + db)) / _dual(dw, norm) * step)
        ys.append(label)
    xs.append(xs[0])
    ys.append(1 - ys[0])
    x = np.stack(xs).reshape(-1, 1, H, H).astype(np.float32)
    assert 0.05 < x.min() and x.max() < 0.95
    return x, np.array(ys)


def _exact(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray, norm: str) -> np.ndarray:
    """The smallest eps at which FGSM (L-inf) / FGM (L2) succeeds on the float32 inputs, in
    float64: margin / dual norm (0 when misclassified). The attack's step moves every input
    back toward 0.5 (against its offset), so it never reaches the box."""
    dw = (w[0] - w[1]).astype(np.float64)
    g = x.reshape(len(x), -1).astype(np.float64) @ dw + float(b[0] - b[1])
    margin = np.where(y == 0, g, -g)
    return np.where(margin > 0, margin / _dual(dw, norm), 0.0)


def _models(w: np.ndarray, b: np.ndarray) -> list[Any]:
    import keras
    import torch

    from advharness.models.tf_model import TFModel
    from advharness.models.torch_model import TorchModel

    lin = torch.nn.Linear(D, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w))
        lin.bias.copy_(torch.from_numpy(b))
    tm = TorchModel(
        torch.nn.Sequential(torch.nn.Flatten(), lin), input_shape=(1, H, H), nb_classes=2, name="lin-torch"
    )
    dense = keras.layers.Dense(2)
    km = keras.Sequential([keras.Input((H, H, 1)), keras.layers.Flatten(), dense])
    dense.set_weights([w.T, b])
    return [tm, TFModel(km, input_shape=(H, H, 1), nb_classes=2, name="lin-tf")]


def _first_bracket(r: float, start: float, top: float) -> tuple[float, float]:
    """The bracket doubling from ``start`` (capped at ``top``) leaves around distance ``r``."""
    lo, hi = 0.0, start
    while hi < r and hi < top:
        lo, hi = hi, min(2 * hi, top)
    return lo, hi


def _check(res, exact: np.ndarray, start: float, top: float) -> None:  # type: ignore[no-untyped-def]
    assert (res.summary["status"] == "ok").all(), res.summary[["library", "reason"]]
    for _, row in res.summary.iterrows():
        rec = res.records[res.records["cell"] == row["cell"]].sort_values("sample")
        found = rec["search_eps"].to_numpy()
        low = rec["search_eps_low"].to_numpy()
        where = (row["library"], row["framework"], row["attack"])
        # misclassified clean: 0, never attacked
        assert found[-1] == 0 and low[-1] == 0 and not rec["correct"].iloc[-1], where
        # beyond max: inf, and it failed at max itself
        hopeless = exact > top
        assert hopeless.sum() == 1 and np.isinf(found[hopeless]).all(), where
        assert low[hopeless] == pytest.approx(top), where
        ok = (exact > 0) & ~hopeless
        tol = 1e-5 * exact[ok] + 1e-7
        # the exact answer lies in the final bracket (low, found]...
        assert (low[ok] - tol <= exact[ok]).all() and (exact[ok] <= found[ok] + tol).all(), where
        # ... which is the doubling bracket halved STEPS times
        first = np.array([_first_bracket(r, start, top) for r in exact[ok]])
        width = found[ok] - low[ok]
        assert np.allclose(width, (first[:, 1] - first[:, 0]) / 2**STEPS, rtol=1e-9), where
        assert (found[ok] - exact[ok] <= width + tol).all(), where
        assert rec["success"].to_numpy().tolist() == list(np.isfinite(found) & (found > 0)), where
        assert row["median_search_eps"] == pytest.approx(float(np.median(found[:-1])))
        assert row["success_rate"] == pytest.approx(ok.sum() / (ok.sum() + 1))
        assert row["search_calls"] > STEPS and row["search"] and np.isnan(row["eps"])


@pytest.mark.numerics
@pytest.mark.parametrize(("attack", "norm"), [("fgsm", "linf"), ("fgm", "l2")])
def test_search_brackets_the_exact_distance(attack: str, norm: str) -> None:
    """Every library on torch (and Foolbox on TF for L-inf): the per-sample search finds the
    analytic distance within the final bracket; misclassified samples get 0, hopeless ones inf."""
    w, b = _linear()
    scale = 1.0 if norm == "linf" else L2_SCALE
    x, y = _batch(w, b, RADII * scale, norm)
    exact = _exact(w, b, x, y, norm)
    assert np.allclose(exact[:-1], RADII * scale, rtol=1e-5) and exact[-1] == 0
    start, top = START * scale, MAX * scale
    spec = {"attack": attack, "search": {"eps": {"start": start, "max": top, "steps": STEPS}}}
    torch_model, tf_model = _models(w, b)
    _check(run_attacks([torch_model], x, y, [spec], ["art", "foolbox", "cleverhans"]), exact, start, top)
    if norm == "linf":  # the other framework once (each search is ~60 library calls)
        _check(run_attacks([tf_model], x, y, [spec], ["foolbox"]), exact, start, top)


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("eps", "attacks[0].search: search: eps needs its range: search: {eps: {start: 0.01, max: 1.0"),
        ([0.1, 1.0], "attacks[0].search: must be a mapping, got [0.1, 1.0]"),
        ({}, "attacks[0].search.eps: Field required"),
        ({"eps": {"start": 0.1}}, "attacks[0].search.eps.max: Field required"),
        ({"eps": {"start": 0.5, "max": 0.1}}, "attacks[0].search.eps: max (0.1) must be >= start (0.5)"),
        ({"eps": {"start": 0, "max": 1}}, "attacks[0].search.eps.start: must be > 0"),
        (
            {"eps": {"start": True, "max": 1}},
            "attacks[0].search.eps.start: must be a number, got the boolean",
        ),
        ({"eps": {"start": 0.1, "max": float("inf")}}, "attacks[0].search.eps.max: must be a finite number"),
        ({"eps": {"start": 0.1, "max": 1, "steps": -1}}, "attacks[0].search.eps.steps: must be >= 0"),
        ({"eps": {"start": 0.1, "max": 1, "steps": 31}}, "attacks[0].search.eps.steps: Input should be less"),
        ({"eps": {"start": 1e-12, "max": 1}}, "attacks[0].search.eps: max / start is 1e+12: at most 2^30"),
        ({"eps": {"start": 0.1, "max": 1, "bisect": 3}}, "attacks[0].search.eps.bisect: Extra inputs"),
        ({"eps": {"start": 0.1, "max": 1}, "steps": 3}, "attacks[0].search.steps: Extra inputs"),
    ],
    ids=[
        "shorthand",
        "list",
        "empty",
        "no-max",
        "max-below-start",
        "zero-start",
        "boolean",
        "infinite",
        "negative-steps",
        "too-many-steps",
        "too-many-doublings",
        "unknown-key",
        "unknown-search",
    ],
)
def test_bad_search_blocks_are_located(search: object, expected: str) -> None:
    from conftest import errors_of, exp_dict

    lines = errors_of(exp_dict(attacks=[{"attack": "pgd", "steps": 5, "search": search}]))
    assert len(lines) == 1 and lines[0].startswith(expected), lines


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            {"attack": "pgd", "eps": 0.1},
            "attacks[0]: give eps or search (which searches eps per sample), not both",
        ),
        (
            {"attack": "cw"},
            "attacks[0]: search: eps is for fixed-budget attacks; cw is a minimum-norm attack",
        ),
        (
            {"attack": "fgsm", "source": "digits_mlp-torch"},
            "attacks[0]: search: eps is not for transfer cells",
        ),
    ],
    ids=["with-eps", "minimum-norm", "transfer"],
)
def test_search_fits_its_attack(entry: dict[str, Any], expected: str) -> None:
    from conftest import errors_of, exp_dict

    search = {"eps": {"start": 0.1, "max": 1.0}}
    lines = errors_of(exp_dict(attacks=[{**entry, "search": search}]))
    assert len(lines) == 1 and lines[0].startswith(expected), lines


def test_search_cells_are_keyed_by_their_settings() -> None:
    """The search settings are in the content key, the row and the label; specs without a
    search keep the keys they had before searches existed (no ``search`` in their dict)."""
    from conftest import exp_dict

    from advharness.config.experiment import parse_experiment
    from advharness.config.spec import AttackSpec
    from advharness.execution.plan import plan_cells
    from advharness.zoo.data import load_dataset

    searches: list[Any] = [{"eps": {"start": 0.05, "max": 0.4, "steps": s}} for s in (4, 6)]
    attacks = [{"attack": "fgsm", "search": s} for s in searches] + [{"attack": "fgsm", "eps": 0.1}]
    exp = parse_experiment(exp_dict(attacks=attacks, libraries=["foolbox"]))
    tasks = plan_cells(exp, load_dataset("digits", n_samples=8), {})
    assert len({t.key for t in tasks}) == 3
    assert [t.row["search"] for t in tasks] == [
        '{"eps": {"max": 0.4, "start": 0.05, "steps": 4}}',
        '{"eps": {"max": 0.4, "start": 0.05, "steps": 6}}',
        "",
    ]
    assert "search" not in AttackSpec(attack="fgsm", eps=0.1).resolve().to_dict()
    assert AttackSpec(attack="fgsm", search=searches[0]).resolve().label == "fgsm-linf eps=search[0.05..0.4]"


def test_search_in_an_experiment_counts_every_call(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Through the planner and a worker: a white-box PGD search (step size by the default
    rule at each eps) and a decision-based noise search (queries per sample summed over every
    call), each a row with its search settings and summary."""
    from advharness.config.experiment import parse_experiment
    from advharness.execution.orchestrate import run_experiment

    search = {"eps": {"start": 0.05, "max": 0.4, "steps": 3}}
    exp = parse_experiment(
        {
            "name": "search",
            "data": {"dataset": "digits", "n_samples": 16},
            "models": [{"recipe": "digits_mlp", "framework": "torch"}],
            "libraries": ["foolbox"],
            "attacks": [
                {"attack": "pgd", "steps": 10, "search": search},
                {"attack": "noise", "search": search, "params": {"draws": 5}},
            ],
        }
    )
    res = run_experiment(exp, tmp_path, backend="inline")
    s: Any = res.summary.set_index("attack")
    assert (s["status"] == "ok").all(), s["reason"].tolist()
    for attack in ("pgd", "noise"):
        rec = res.records[res.records["attack"] == attack]
        found = rec.loc[rec["correct"], "search_eps"].to_numpy()
        assert s.loc[attack, "median_search_eps"] == pytest.approx(float(np.median(found)))
        assert (rec.loc[~rec["correct"], "search_eps"] == 0).all()
        assert s.loc[attack, "success_rate"] == pytest.approx(float(np.isfinite(found).mean()))
        call = s.loc[attack, "library_call"]
        assert "eps search" in call and f"{s.loc[attack, 'search_calls']} library calls" in call
    pgd = res.records[res.records["attack"] == "pgd"]
    assert np.isfinite(pgd.loc[pgd["correct"], "search_eps"]).all()  # PGD fools all by 0.4
    assert s.loc["pgd", "forward_per_sample"] > 10  # several calls of 10 steps each
    noise = res.records[(res.records["attack"] == "noise") & res.records["correct"]]
    # every correct sample was tried at 0.05, 0.1, 0.2 and 0.4 at least until it succeeded:
    # at least one draw and Foolbox's final check per call, at most draws + 1
    tries = np.where(np.isinf(noise["search_eps"]), 4, 0)
    assert (noise["queries"] >= 2 * np.maximum(tries, 1)).all()
    assert s.loc["noise", "queries_mean"] == pytest.approx(noise["queries"].mean())
    assert s.loc["noise", "forward_per_sample"] * 16 == noise["queries"].sum()
