"""Security curves (fixed-budget rows, minimum-norm norms) and per-sample distances on
hand-built frames whose curves are worked out in each test."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from analytics_helpers import cell_records, summary_row
from scipy import stats

from advharness.analytics import distance_cdf, per_sample_distances, security_curves, step_radii

#: A minimum-norm cell on 5 samples: 4 correct; broken at L2 0.5, 0.2, (failed), 0.5.
CW: dict[str, Any] = {
    "correct": [True, True, True, True, False],
    "success": [True, True, False, True, False],
    "dist": [0.5, 0.2, 0.9, 0.5, 0.0],  # sample 2 failed: its 0.9 must never count
}


def _cw_summary(*radii: float) -> pd.DataFrame:
    base: dict[str, Any] = {
        "cell_key": "cw",
        "attack": "cw",
        "kind": "minimal",
        "norm": "l2",
        "n": 5,
        "n_correct": 4,
    }
    ra = {0.2: 0.6, 0.5: 0.2}
    rows = [
        summary_row(cell=i, eps=r, robust_accuracy=0.2, robust_accuracy_at_eps=ra[r], **base)
        for i, r in enumerate(radii)
    ]
    return pd.DataFrame(rows)


def test_fixed_budget_curve_starts_at_the_clean_point() -> None:
    """Two PGD cells (eps 0.1, 0.2) of 8 samples, 6 correct: points (0, 6/8), (0.1, 4/8),
    (0.2, 2/8); a failed cell adds nothing; another library is its own curve."""
    s = pd.DataFrame(
        [
            summary_row(cell=0, cell_key="a", eps=0.2, robust_accuracy=0.25),
            summary_row(cell=1, cell_key="b", eps=0.1, robust_accuracy=0.5),
            summary_row(cell=2, cell_key="c", eps=0.3, status="error", robust_accuracy=float("nan")),
            summary_row(cell=3, cell_key="d", eps=0.1, library="foolbox", robust_accuracy=0.625),
        ]
    )
    curves = security_curves(s)
    art = curves[curves["library"] == "art"]
    assert art["eps"].tolist() == [0.0, 0.1, 0.2]
    assert art["robust_accuracy"].tolist() == [0.75, 0.5, 0.25]
    assert art["point"].tolist() == ["clean", "cell", "cell"]
    assert art["n_robust"].tolist() == [6, 4, 2]
    assert art["cell_key"].tolist()[1:] == ["b", "a"]
    ref = stats.binomtest(4, 8).proportion_ci(method="wilson")
    assert art["ci_low"].iloc[1] == pytest.approx(ref.low)
    assert art["ci_high"].iloc[1] == pytest.approx(ref.high)
    fb = curves[curves["library"] == "foolbox"]
    assert fb["robust_accuracy"].tolist() == [0.75, 0.625]


def test_step_size_that_follows_eps_does_not_split_a_curve() -> None:
    """FGSM steps by eps: its cells differ in step_size and still form one curve; two cells
    at one eps that differ in step_size are two curves."""
    s = pd.DataFrame(
        [
            summary_row(cell=0, cell_key="a", attack="fgsm", eps=0.1, step_size=0.1, robust_accuracy=0.5),
            summary_row(cell=1, cell_key="b", attack="fgsm", eps=0.2, step_size=0.2, robust_accuracy=0.25),
        ]
    )
    assert len(security_curves(s)) == 3
    s2 = pd.DataFrame(
        [
            summary_row(cell=0, cell_key="a", eps=0.1, step_size=0.01, robust_accuracy=0.5),
            summary_row(cell=1, cell_key="b", eps=0.1, step_size=0.02, robust_accuracy=0.25),
        ]
    )
    curves = security_curves(s2)
    assert len(curves) == 4 and sorted(curves["step_size"].unique()) == [0.01, 0.02]


def test_minimum_norm_curve_from_the_stored_norms() -> None:
    """Clean 4/5; within 0.2 sample 1 breaks (3/5 robust); within 0.5 samples 0 and 3 too
    (1/5). The failed sample's norm never counts, at any radius."""
    recs = cell_records("cw", **CW)
    curves = security_curves(_cw_summary(0.2), recs)
    assert curves["eps"].tolist() == [0.0, 0.2, 0.5]
    assert curves["robust_accuracy"].tolist() == pytest.approx([0.8, 0.6, 0.2])
    assert curves["point"].tolist() == ["clean", "norms", "norms"]
    at = security_curves(_cw_summary(0.2), recs, radii=[0.19, 0.2 / (1 + 2e-6), 0.3, 1.0, 5.0])
    # 0.2 / (1 + 2e-6) is inside the referee's tolerance of 0.2: still broken there
    assert at["robust_accuracy"].tolist() == pytest.approx([0.8, 0.8, 0.6, 0.6, 0.2, 0.2])


def test_minimum_norm_curve_without_records_uses_the_reporting_radii() -> None:
    curves = security_curves(_cw_summary(0.2, 0.5))
    assert curves["eps"].tolist() == [0.0, 0.2, 0.5]
    assert curves["robust_accuracy"].tolist() == pytest.approx([0.8, 0.6, 0.2])
    assert curves["point"].tolist() == ["clean", "radius", "radius"]


def test_minimum_norm_curve_without_recomputed_radii_has_only_the_clean_point() -> None:
    """Cells stored without records carry no ``robust_accuracy_at_eps``: no radius points."""
    curves = security_curves(_cw_summary(0.2, 0.5).drop(columns="robust_accuracy_at_eps"))
    assert curves["point"].tolist() == ["clean"]
    assert curves["robust_accuracy"].tolist() == pytest.approx([0.8])


def test_per_sample_distances_of_a_minimum_norm_cell() -> None:
    """Successes keep their norm, failures are +inf, misclassified samples 0; a cell
    reported at two radii appears once."""
    recs = pd.concat(
        [cell_records("cw", eps=0.2, **CW), cell_records("cw", cell=1, eps=0.5, **CW)], ignore_index=True
    )
    d = per_sample_distances(recs)
    assert len(d) == 5 and d["eps"].isna().all()
    assert d["distance"].tolist() == [0.5, 0.2, math.inf, 0.5, 0.0]
    assert d["broken"].tolist() == [True, True, False, True, False]
    assert set(d["distance_source"]) == {"norm"}
    # with the summary, the settings that tell a grid's cells apart come along
    grid = pd.concat([recs, cell_records("cw2", cell=2, **CW)], ignore_index=True)
    summary = pd.DataFrame(
        [
            summary_row(cell=0, cell_key="cw", attack="cw", kind="minimal", steps=10),
            summary_row(cell=1, cell_key="cw", attack="cw", kind="minimal", steps=10),
            summary_row(cell=2, cell_key="cw2", attack="cw", kind="minimal", steps=20),
        ]
    )
    with_steps = per_sample_distances(grid, summary)
    assert with_steps.groupby("cell_key")["steps"].first().to_dict() == {"cw": 10, "cw2": 20}


def test_fixed_budget_distances_come_from_search_eps_or_are_skipped() -> None:
    pgd: dict[str, Any] = dict(attack="pgd", kind="fixed", norm="linf", eps=0.3)
    plain = cell_records(
        "p", correct=[True, True, False], success=[True, False, False], dist=[0.3] * 3, **pgd
    )
    assert per_sample_distances(plain).empty
    upper = per_sample_distances(plain, fixed="norm")
    assert upper["distance"].tolist() == [0.3, math.inf, 0.0]
    assert set(upper["distance_source"]) == {"fixed_norm"}
    searched = cell_records(
        "s",
        correct=[True, True, True, True, False],
        success=[True, False, True, False, False],
        dist=[0.3] * 5,
        search_eps=[0.1, np.nan, 0.25, np.inf, 0.05],
        **pgd,
    )
    d = per_sample_distances(searched)
    assert d["distance"].tolist() == [0.1, math.inf, 0.25, math.inf, 0.0]
    assert set(d["distance_source"]) == {"search_eps"}
    with pytest.raises(ValueError, match="fixed"):
        per_sample_distances(plain, fixed="maybe")


def test_distance_cdf_exact_steps_and_grid() -> None:
    """Distances 0.5, 0.2, inf, 0.5, 0 -> CDF 1/5 at 0, 2/5 at 0.2, 4/5 at 0.5 (the inf never
    counts); robust accuracy is its complement, equal to the security curve."""
    d = per_sample_distances(cell_records("cw", **CW))
    assert step_radii(d["distance"]).tolist() == [0.0, 0.2, 0.5]
    cdf = distance_cdf(d)
    assert cdf["radius"].tolist() == [0.0, 0.2, 0.5]
    assert cdf["cdf"].tolist() == pytest.approx([0.2, 0.4, 0.8])
    assert cdf["robust_accuracy"].tolist() == pytest.approx([0.8, 0.6, 0.2])
    grid = distance_cdf(d, radii=[0.1, 0.3, 100.0])
    assert grid["cdf"].tolist() == pytest.approx([0.2, 0.4, 0.8])
    assert (grid["n"] == 5).all()
