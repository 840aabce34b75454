"""The referee catches bad outputs, whatever the library claims."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from advharness.judging.referee import judge, perturbation_norms, summarize

N, D = 6, 16


def _case(
    x_adv: np.ndarray | Callable[[np.ndarray], np.ndarray],
    adv_pred: np.ndarray,
    clean_pred: np.ndarray | None = None,
    eps: float | None = 0.1,
    enforce: bool = True,
    targets: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.8, size=(N, 1, 4, 4)).astype(np.float32)
    y = np.arange(N) % 3
    clean = y.copy() if clean_pred is None else clean_pred
    return (
        x,
        y,
        judge(
            x=x,
            y=y,
            x_adv=x_adv(x) if callable(x_adv) else x_adv,
            clean_pred=clean,
            adv_pred=adv_pred,
            bounds=(0.0, 1.0),
            norm="linf",
            eps=eps,
            enforce_eps=enforce,
            targets=targets,
        ).records,
    )


def test_valid_successes_are_counted() -> None:
    _, _, r = _case(lambda x: x + 0.05, adv_pred=(np.arange(N) + 1) % 3)
    assert r["success"].all() and not r["eps_violation"].any()
    assert np.allclose(r["linf"], 0.05, atol=1e-6)


def test_outside_eps_ball_is_not_a_success() -> None:
    _, _, r = _case(
        lambda x: x + np.where(np.arange(N)[:, None, None, None] < 2, 0.2, 0.05),
        adv_pred=(np.arange(N) + 1) % 3,
    )
    assert r["eps_violation"].tolist() == [True, True, False, False, False, False]
    assert r["fooled"].all()
    assert r["success"].tolist() == [False, False, True, True, True, True]


def test_float_rounding_at_eps_is_tolerated() -> None:
    _, _, r = _case(lambda x: x + np.float32(0.10000000149), adv_pred=(np.arange(N) + 1) % 3)
    assert not r["eps_violation"].any()


def test_outside_box_is_caught() -> None:
    def adv(x: np.ndarray) -> np.ndarray:
        a = x.copy()
        a[0, 0, 0, 0] = 1.05
        a[1, 0, 0, 0] = -0.01
        return a

    _, _, r = _case(adv, adv_pred=(np.arange(N) + 1) % 3, eps=None, enforce=False)
    assert r["box_violation"].tolist()[:3] == [True, True, False]
    assert not r["success"][:2].any() and r["success"][2:].all()


def test_all_zero_fallback_is_degenerate() -> None:
    adv_pred = (np.arange(N) + 1) % 3  # the zero image is "misclassified"
    _, _, r = _case(lambda x: np.zeros_like(x), adv_pred=adv_pred, eps=None, enforce=False)
    assert r["degenerate"].all() and not r["success"].any() and r["fooled"].all()


def test_nan_outputs_are_flagged_not_successes() -> None:
    def adv(x: np.ndarray) -> np.ndarray:
        a = x.copy()
        a[2] = np.nan
        return a

    _, _, r = _case(adv, adv_pred=(np.arange(N) + 1) % 3, eps=None, enforce=False)
    assert r["nonfinite"].tolist() == [False, False, True, False, False, False]
    assert not r["success"][2] and np.isnan(r["l2"][2])


def test_already_misclassified_are_excluded() -> None:
    y = np.arange(N) % 3
    clean = y.copy()
    clean[:2] = (y[:2] + 1) % 3
    _, _, r = _case(lambda x: x + 0.05, adv_pred=(np.arange(N) + 1) % 3, clean_pred=clean)
    assert not r["success"][:2].any()
    s = summarize(r, "linf")
    assert s["n_misclassified_clean"] == 2 and s["n_correct"] == 4
    assert s["success_rate"] == 1.0 and s["robust_accuracy"] == 0.0


def test_targeted_success_needs_the_target() -> None:
    targets = (np.arange(N) + 2) % 3
    adv_pred = np.where(np.arange(N) < 3, targets, (np.arange(N) + 1) % 3)
    _, _, r = _case(lambda x: x + 0.01, adv_pred=adv_pred, targets=targets)
    assert r["success"].tolist() == [True, True, True, False, False, False]


def test_minimal_attack_success_at_eps() -> None:
    _, _, r = _case(
        lambda x: x + np.where(np.arange(N)[:, None, None, None] < 3, 0.15, 0.05),
        adv_pred=(np.arange(N) + 1) % 3,
        eps=0.1,
        enforce=False,
    )
    assert r["success"].all()
    assert r["success_at_eps"].tolist() == [False] * 3 + [True] * 3
    s = summarize(r, "linf")
    assert s["success_rate"] == 1.0 and s["success_rate_at_eps"] == 0.5
    assert s["mean_linf"] == pytest.approx(0.1, abs=1e-6)
    assert s["median_linf"] == pytest.approx(0.1, abs=1e-6)
    assert s["median_l0"] == 16 and s["mean_l2"] == pytest.approx((0.15 + 0.05) / 2 * 4, abs=1e-5)


@pytest.mark.parametrize("norm,expected", [("l0", 3.0), ("l1", 0.6), ("l2", np.sqrt(0.14)), ("linf", 0.3)])
def test_norms(norm: str, expected: float) -> None:
    d = np.zeros((1, 2, 3), np.float32)
    d[0, 0, 0], d[0, 1, 1], d[0, 1, 2] = 0.1, -0.2, 0.3
    assert perturbation_norms(d)[norm][0] == pytest.approx(expected, rel=1e-6)


def test_black_box_beating_white_box_is_flagged() -> None:
    import pandas as pd

    from advharness.judging.referee import flag_gradient_masking

    base = {"model": "m", "norm": "linf", "eps": 0.1, "targeted": False, "status": "ok"}
    s = pd.DataFrame(
        [
            {**base, "threat_model": "white-box", "success_rate_at_eps": 0.30},
            {**base, "threat_model": "white-box", "success_rate_at_eps": 0.50},
            {**base, "threat_model": "score-based", "success_rate_at_eps": 0.60},  # beats both
            {**base, "threat_model": "decision-based", "success_rate_at_eps": 0.50},  # ties: no
            {**base, "eps": 0.2, "threat_model": "score-based", "success_rate_at_eps": 0.9},  # no ref
            {**base, "threat_model": "score-based", "success_rate_at_eps": 0.9, "status": "error"},
        ]
    )
    assert flag_gradient_masking(s).tolist() == [False, False, True, False, False, False]
    # the random-noise baseline is never a white-box reference, whatever its threat model
    noise = {**base, "threat_model": "white-box", "success_rate_at_eps": 0.55}
    s = pd.DataFrame([{**r, "attack": "pgd"} for r in s.to_dict("records")] + [{**noise, "attack": "noise"}])
    assert flag_gradient_masking(s).tolist() == [False, False, True, False, False, False, True]


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_eps_and_box_tolerances_scale_with_the_inputs_magnitude(norm: str) -> None:
    """On a [0, 255] model a float32 step of exactly eps lands up to ~8e-6 off (the spacing
    of float32 near 255 is 1.5e-5): that is rounding, not a violation (it was one at eps 0.1)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(200, 254.8, (16, 1, 4, 4)).astype(np.float32)
    step = np.sign(rng.normal(size=x.shape)).astype(np.float32)
    eps = 0.1 if norm == "linf" else 0.4  # l2: 16 coordinates of 0.1
    x_adv = np.clip(x + np.float32(0.1) * step, 0, 255).astype(np.float32)
    y = np.zeros(16, np.int64)
    v = judge(
        x=x,
        y=y,
        x_adv=x_adv,
        clean_pred=y,
        adv_pred=y + 1,
        bounds=(0.0, 255.0),
        norm=norm,
        eps=eps,
        enforce_eps=True,
    ).records
    off = np.abs(v[norm].to_numpy() - eps)
    assert off.max() > 1e-6 + 1e-5 * eps  # outside the old absolute tolerance ...
    assert not v["eps_violation"].any() and v["success"].all()  # ... but within the scaled one
    # a real violation is still one
    far = judge(
        x=x,
        y=y,
        x_adv=np.clip(x + np.float32(0.11) * step, 0, 255),
        clean_pred=y,
        adv_pred=y + 1,
        bounds=(0.0, 255.0),
        norm=norm,
        eps=eps,
        enforce_eps=True,
    )
    assert far.records["eps_violation"].all()
