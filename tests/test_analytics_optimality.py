"""AttackBench's optimality on hand-built distances, each value worked out by hand from the
step curves (and the exact integral checked against a Riemann sum)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from analytics_helpers import cell_records

from advharness.analytics import (
    best_distances,
    global_optimality,
    local_optimality,
    optimality_of,
    per_sample_distances,
    step_area,
)


def _cell(
    key: str, dist: list[float], library: str = "art", attack: str = "cw", model: str = "m"
) -> pd.DataFrame:
    """Records giving per-sample distances ``dist`` (0: misclassified, inf: not broken)."""
    d = np.asarray(dist, dtype=np.float64)
    return cell_records(
        key,
        correct=list(d > 0),
        success=list(np.isfinite(d) & (d > 0)),
        dist=list(np.where(np.isfinite(d), d, 9.0)),
        library=library,
        attack=attack,
        model=model,
    )


def _distances(*cells: pd.DataFrame) -> pd.DataFrame:
    return per_sample_distances(pd.concat(cells, ignore_index=True))


def test_step_area_is_the_exact_integral() -> None:
    """∫_0^R #{d_i > r}/n dr against a midpoint Riemann sum of the step curve."""
    d = np.array([0.0, 0.3, 1.2, 2.0, np.inf, 0.7])
    r_max = 1.5
    grid = (np.arange(200_000) + 0.5) * (r_max / 200_000)
    riemann = float((d[None, :] > grid[:, None]).mean(axis=1).sum() * (r_max / 200_000))
    assert step_area(d, r_max) == pytest.approx(riemann, abs=1e-5)
    assert step_area(d, r_max) == pytest.approx((0 + 0.3 + 1.2 + 1.5 + 1.5 + 0.7) / 6)


def test_the_best_attack_has_optimality_one_and_a_worse_one_a_hand_value() -> None:
    """Best distances (0, 1, 2, inf) of 4 samples: clean accuracy c = 3/4, R = 2. The best
    curve is 3/4 on [0, 1), 2/4 on [1, 2); the area between it and the flat line c over
    [0, R] is 1/4 · 1 = 1/4. Attack B (0, 1.5, 2, inf) stays at 3/4 until 1.5: it leaves
    1/4 · 0.5 = 1/8 of that area uncovered, so LO = 1 - (1/8)/(1/4) = 0.5. An attack that
    breaks nothing covers none of it: LO = 0."""
    a = _cell("A", [0, 1, 2, math.inf], library="art")
    b = _cell("B", [0, 1.5, 2, math.inf], library="foolbox")
    c = _cell("C", [0, math.inf, math.inf, math.inf], library="cleverhans")
    lo = local_optimality(_distances(a, b, c)).set_index("cell_key")
    assert lo.loc["A", "local_optimality"] == pytest.approx(1.0)
    assert lo.loc["B", "local_optimality"] == pytest.approx(0.5)
    assert lo.loc["C", "local_optimality"] == pytest.approx(0.0)
    assert lo.loc["A", "max_distance"] == 2.0 and lo.loc["A", "clean_accuracy"] == 0.75
    gap = lo["area"] - lo["best_area"]
    assert gap["B"] == pytest.approx(1 / 8)


def test_a_per_sample_best_mixed_from_two_attacks() -> None:
    """D = (0, 1, 4, 2, inf), E = (0, 3, 2, 2.5, 6): best = (0, 1, 2, 2, 6), R = 6, c = 4/5,
    A* = (0+1+2+2+6)/5 = 2.2, c·R - A* = 2.6. A_D = (0+1+4+2+6)/5 = 2.6 -> LO = 1 - 0.4/2.6
    = 11/13; A_E = (0+3+2+2.5+6)/5 = 2.7 -> LO = 1 - 0.5/2.6 = 21/26. Neither is 1: only
    the ensemble reaches the best."""
    d = _cell("D", [0, 1, 4, 2, math.inf], attack="fmn")
    e = _cell("E", [0, 3, 2, 2.5, 6], attack="cw")
    dist = _distances(d, e)
    best = best_distances(dist)
    assert best["best_distance"].tolist() == [0, 1, 2, 2, 6]
    assert best["best_cell_key"].tolist()[1:] == ["D", "E", "D", "E"]
    assert (best["n_runs"] == 2).all()
    lo = local_optimality(dist).set_index("cell_key")["local_optimality"]
    assert lo["D"] == pytest.approx(11 / 13)
    assert lo["E"] == pytest.approx(21 / 26)


def test_optimality_is_undefined_when_the_best_breaks_nothing() -> None:
    assert math.isnan(optimality_of([0, math.inf], [0, math.inf])["local_optimality"])
    # every finite best distance at R: the best curve is flat up to R, nothing to compare
    assert math.isnan(optimality_of([0, 1, 1], [0, 1, 1])["local_optimality"])


def test_best_is_per_model_and_norm() -> None:
    """A run on another model never sets this model's best."""
    a = _cell("A", [0, 1, 2, math.inf], model="m1")
    b = _cell("B", [0, 0.1, 0.1, 0.1], model="m2")
    lo = local_optimality(_distances(a, b)).set_index("cell_key")
    assert lo.loc["A", "local_optimality"] == pytest.approx(1.0)
    assert lo.loc["A", "max_distance"] == 2.0


def test_global_optimality_is_the_mean_over_models() -> None:
    """Foolbox's attack: LO 0.5 on m1 (the worked example above) and 1.0 on m2 (it is the
    best there): 0.75. Each model weighs once, whatever its number of cells."""
    cells = [
        _cell("A1", [0, 1, 2, math.inf], library="art", model="m1"),
        _cell("B1", [0, 1.5, 2, math.inf], library="foolbox", model="m1"),
        _cell("A2", [0, 1, 3, 2], library="art", model="m2"),
        _cell("B2", [0, 1, 2, 2], library="foolbox", model="m2"),
    ]
    out = global_optimality(local_optimality(_distances(*cells))).set_index("library")
    assert out.loc["foolbox", "global_optimality"] == pytest.approx(0.75)
    assert out.loc["foolbox", "min_local"] == pytest.approx(0.5)
    assert out.loc["foolbox", "n_models"] == 2
    # art on m2: best (0,1,2,2), R = 2, c = 3/4, A* = 5/4, c·R - A* = 1/4; A = (0+1+2+2)/4
    # = 5/4 after clipping 3 to R: LO = 1 on both models
    assert out.loc["art", "global_optimality"] == pytest.approx(1.0)
