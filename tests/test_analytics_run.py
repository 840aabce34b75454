"""The analytics on a real tiny run, read back with ``read_results``: the functions accept
its frames, and what they compute agrees with the referee's own summary."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import exp_dict

import advharness.analytics as an
from advharness.config.experiment import parse_experiment
from advharness.execution.orchestrate import run_experiment
from advharness.reporting.render import render_text, to_csv
from advharness.reporting.results import read_adversarials_by_key, read_results


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    exp = parse_experiment(
        exp_dict(
            data={"dataset": "digits", "n_samples": 16},
            libraries=["art", "foolbox"],
            save_adversarials=True,
            attacks=[
                {"attack": "fgsm", "eps": [0.05, 0.1]},
                {"attack": "deepfool", "steps": 20, "eps": 0.5},
            ],
        )
    )
    res = run_experiment(exp, tmp_path_factory.mktemp("analytics") / "results", backend="inline")
    assert res.path is not None
    return read_results(res.path)


def test_summary_intervals_are_wilson_of_the_records_counts(run: Any) -> None:
    s, rec = run.summary, run.records
    assert (s["status"] == "ok").all()
    for _, row in s.iterrows():
        r = rec[rec["cell"] == row["cell"]]
        k = int((r["success_at_eps"] & r["correct"]).sum())
        low, high = an.wilson_interval(k, int(r["correct"].sum()))
        assert row["success_rate_at_eps_ci_low"] == pytest.approx(float(low))
        assert row["success_rate_at_eps_ci_high"] == pytest.approx(float(high))
        assert row["robust_accuracy_ci_low"] <= row["robust_accuracy"] <= row["robust_accuracy_ci_high"]
    text = render_text(s)
    assert "SR " in text and "RA " in text and "%" in text and "[" in text
    assert "art/torch/success_rate_ci_low" in to_csv(s).splitlines()[0]


def test_curves_reproduce_the_summary(run: Any) -> None:
    s, rec = run.summary, run.records
    curves = an.security_curves(s, rec)
    clean = float(s["clean_accuracy"].iloc[0])
    assert (curves.loc[curves["point"] == "clean", "robust_accuracy"] == clean).all()
    fgsm = s[s["attack"] == "fgsm"]
    for _, row in fgsm.iterrows():
        pt = curves[(curves["cell_key"] == row["cell_key"]) & (curves["eps"] == row["eps"])]
        assert pt["robust_accuracy"].tolist() == [pytest.approx(row["robust_accuracy"])]
    assert len(curves[curves["attack"] == "fgsm"]) == 2 * 3  # two libraries, clean + 2 eps
    for _, row in s[s["attack"] == "deepfool"].iterrows():
        at = an.security_curves(s, rec, radii=[row["eps"]])
        at = at[(at["cell_key"] == row["cell_key"]) & (at["point"] == "norms")]
        assert at["robust_accuracy"].tolist() == [pytest.approx(row["robust_accuracy_at_eps"])]
        steps = curves[(curves["cell_key"] == row["cell_key"])]["robust_accuracy"].to_numpy()
        assert (np.diff(steps) <= 0).all() and steps[-1] == pytest.approx(row["robust_accuracy"])


def test_distances_and_optimality_on_real_norms(run: Any) -> None:
    s, rec = run.summary, run.records
    d = an.per_sample_distances(rec, s)
    assert set(d["attack"]) == {"deepfool"} and len(d) == 2 * 16  # fixed-budget cells skipped
    deepfool = s[s["attack"] == "deepfool"].drop_duplicates("cell_key")
    for _, row in deepfool.iterrows():
        mine = d[d["cell_key"] == row["cell_key"]]
        broken = mine.loc[mine["broken"], "distance"]
        assert np.median(broken) == pytest.approx(row["median_norm"])
    lo = an.local_optimality(d)
    assert len(lo) == 2 and lo["local_optimality"].between(0, 1).all()
    assert lo["best_area"].nunique() == 1  # one best for the model, shared by both cells
    assert (lo["best_area"] <= lo["area"] + 1e-12).all()
    cdf = an.distance_cdf(d)
    assert (cdf.groupby("cell_key")["cdf"].last() == 1.0).all()  # deepfool broke every sample


def test_worst_case_is_never_above_any_member(run: Any) -> None:
    s, rec = run.summary, run.records
    best = an.best_implementation(rec, s)
    ens = an.ensemble_robust_accuracy(rec, s)
    for frame in (best, ens):
        for _, row in frame.iterrows():
            members = s[(s["eps"] == row["eps"]) & (s["norm"] == row["norm"])]
            if "attack" in frame.columns:
                members = members[members["attack"] == row["attack"]]
            assert row["robust_accuracy"] <= members["robust_accuracy_at_eps"].min() + 1e-12
            assert row["best_member_robust_accuracy"] == pytest.approx(
                members["robust_accuracy_at_eps"].min()
            )
    assert set(ens["eps"]) == {0.05, 0.1, 0.5}


def test_library_agreement_with_the_saved_adversarials(run: Any) -> None:
    s, rec = run.summary, run.records
    adv = read_adversarials_by_key(run.path)
    assert set(adv) == set(s["cell_key"])
    out = an.library_agreement(rec, s, adv)
    assert len(out) == 3  # fgsm at two eps, deepfool once (its radius is a reporting choice)
    assert out["max_abs_x_adv_difference"].notna().all()
    fgsm = out[out["attack"] == "fgsm"]
    # the same one-step formula in both libraries (tests/test_parity.py holds them to 1e-5)
    assert set(fgsm["verdict"]) <= {"identical", "equivalent"}
    assert (fgsm["agreement"] == 1.0).all()
    assert set(out["verdict"]) <= {"identical", "equivalent", "differs"}
    one = read_adversarials_by_key(run.path, [s["cell_key"].iloc[0], "0" * 24])
    assert list(one) == [s["cell_key"].iloc[0]]
    assert isinstance(next(iter(one.values())), np.ndarray)
