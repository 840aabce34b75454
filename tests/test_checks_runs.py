"""The sanity checks on how attacks ran and on the model (model probes, convergence cells,
loss still falling, silent successes, libraries that disagree) on hand-built runs, with the
columns other parts of a run add built by hand: each fires on a bad evaluation, stays quiet
on a good one, and reports nothing when its columns are absent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from checks_helpers import cell, run

from advharness.analytics import CHECKS, sanity_checks

R = range
PROBE_CHECKS = [name for name in CHECKS if name.startswith("probe_")]


def probes(*rows: tuple[str, str, bool]) -> pd.DataFrame:
    """Probe rows ``(model, probe, flagged)`` in the shape a run gives them."""
    return pd.DataFrame(
        [
            {
                "model": m,
                "probe": p,
                "flagged": f,
                "value": 1.0 if f else 0.0,
                "threshold": 0.5,
                "rule": f"{p} rule",
                "source": f"{p} source",
            }
            for m, p, f in rows
        ]
    )


def test_flagged_probes_concern_every_cell_of_their_model() -> None:
    s, r = run(cell("a", "pgd", R(5)), cell("b", "fgsm", R(4)), cell("c", "pgd", R(5), model="other"))
    table = probes(
        ("m", "zero_gradients", True),
        ("m", "randomness", False),
        ("other", "softmax_output", True),
        ("other", "my_probe", True),
    )
    out = sanity_checks(s, r, table, checks=PROBE_CHECKS).set_index("check")
    assert sorted(out.index) == ["probe_other", "probe_softmax_output", "probe_zero_gradients"]
    zero = out.loc["probe_zero_gradients"]
    assert zero["cell_keys"] == ("a", "b") and zero["model"] == "m" and zero["severity"] == "error"
    # the probe's own rule, threshold and source are passed through
    assert (zero["rule"], zero["threshold"], zero["source"]) == (
        "zero_gradients rule",
        "0.5",
        "zero_gradients source",
    )
    assert out.loc["probe_other", "cell_keys"] == ("c",)
    assert "my_probe" in str(out.loc["probe_other", "message"])
    # without the probe's texts, the registry's
    bare = table.drop(columns=["rule", "source"])
    out = sanity_checks(s, r, bare, checks=["probe_zero_gradients"])
    assert out["rule"].tolist() == [CHECKS["probe_zero_gradients"].rule]
    # no probes, empty probes, nothing flagged: quiet
    for quiet in (None, table.iloc[0:0], probes(("m", "zero_gradients", False))):
        assert sanity_checks(s, r, quiet, checks=PROBE_CHECKS).empty


def _convergence(doubled_broken: range | list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    base = cell("base", "pgd", R(10), summary={"steps": 10, "check": None, "base_cell_key": None})
    extra = {"steps": 20, "check": "convergence", "base_cell_key": "base"}
    return run(base, cell("twice", "pgd", doubled_broken, summary=extra))


def test_doubling_the_steps_must_not_raise_success() -> None:
    out = sanity_checks(*_convergence([*R(8), 10, 11, 12, 13]), checks=["convergence_gain"])
    assert len(out) == 1
    row = out.iloc[0]
    assert row["cell_keys"] == ("base",) and row["reference_keys"] == ("twice",)  # base not converged
    assert row["samples"] == (10, 11, 12, 13)
    assert row["value"] == pytest.approx(2 / 40) and row["severity"] == "error"
    assert "broke 2 more of 40 samples" in row["message"] and "steps=20" in row["message"]
    # one more sample (> 1 needed), or a net gain of 0: quiet
    assert sanity_checks(*_convergence(R(11)), checks=["convergence_gain"]).empty
    assert sanity_checks(*_convergence([*R(5), *R(20, 25)]), checks=["convergence_gain"]).empty
    # without the convergence columns (not on this run): nothing
    s, r = _convergence(R(30))
    assert sanity_checks(s.drop(columns=["check", "base_cell_key"]), r, checks=["convergence_gain"]).empty


def test_convergence_cells_of_a_minimum_norm_attack_compare_at_each_radius() -> None:
    base = cell(
        "base",
        "cw",
        R(10),
        kind="minimal",
        norm="l2",
        eps=1.0,
        summary={"check": None, "base_cell_key": None},
    )
    extra = {"check": "convergence", "base_cell_key": "base"}
    twice = cell("twice", "cw", R(20), kind="minimal", norm="l2", eps=1.0, summary=extra)
    out = sanity_checks(*run(base, twice), checks=["convergence_gain"])
    assert out["eps"].tolist() == [1.0] and out["value"].tolist() == [pytest.approx(0.25)]


def test_loss_still_falling_on_a_share_of_the_attacked_samples() -> None:
    def with_flags(flagged: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
        incomplete = np.isin(np.arange(40), flagged)
        return run(cell("p", "pgd", R(10), misclassified=[39], incomplete_optimization=incomplete))

    # samples 10..14 failed with the loss falling: 5 of 39 attacked (> 10 %); broken ones do not count
    out = sanity_checks(*with_flags([*R(15), 39]), checks=["incomplete_optimization"])
    assert len(out) == 1 and out.iloc[0]["samples"] == (10, 11, 12, 13, 14)
    assert out.iloc[0]["value"] == pytest.approx(5 / 39) and "I4" in out.iloc[0]["source"]
    assert sanity_checks(*with_flags([*R(10), 20, 21, 22]), checks=["incomplete_optimization"]).empty
    assert sanity_checks(*run(cell("p", "pgd", R(10))), checks=["incomplete_optimization"]).empty


def test_silent_successes() -> None:
    silent = np.isin(np.arange(40), [3, 30])
    out = sanity_checks(*run(cell("p", "pgd", R(10), silent_success=silent)), checks=["silent_success"])
    assert out["samples"].tolist() == [(3, 30)] and out["value"].tolist() == [2.0]
    quiet = np.zeros(40, bool)
    assert sanity_checks(*run(cell("p", "pgd", R(10), silent_success=quiet)), checks=["silent_success"]).empty


def test_libraries_disagreeing_on_the_broken_samples() -> None:
    s, r = run(cell("a", "pgd", R(20)), cell("f", "pgd", R(10, 30), library="foolbox"))
    out = sanity_checks(s, r, checks=["library_disagreement"])
    assert len(out) == 1 and out.iloc[0]["cell_keys"] == ("a", "f") and out.iloc[0]["reference_keys"] == ()
    assert out.iloc[0]["value"] == pytest.approx(0.5)
    assert "agree on 50% of 40 samples" in out.iloc[0]["message"] and "differs" in out.iloc[0]["message"]
    # two samples apart (95 %) is within the threshold
    s, r = run(cell("a", "pgd", R(20)), cell("f", "pgd", R(2, 22), library="foolbox"))
    assert sanity_checks(s, r, checks=["library_disagreement"]).empty


def test_every_check_is_registered_with_its_rule_threshold_source_and_columns() -> None:
    for name, check in CHECKS.items():
        assert check.rule and check.threshold and check.source, name
        assert check.severity in ("error", "warning"), name
        assert check.function.__doc__, name
        assert check.summary_columns or check.records_columns, name


def test_a_sound_evaluation_with_every_column_raises_no_flag() -> None:
    none = np.zeros(40, bool)
    base = {"check": None, "base_cell_key": None}
    s, r = run(
        cell(
            "p",
            "pgd",
            R(20),
            summary={**base, "steps": 10},
            incomplete_optimization=none,
            silent_success=none,
        ),
        cell("p2", "pgd", R(21), summary={"steps": 20, "check": "convergence", "base_cell_key": "p"}),
        cell("fb", "pgd", R(1, 21), library="foolbox", summary={**base, "steps": 10}),
    )
    table = probes(*(("m", p, False) for p in ("zero_gradients", "randomness", "batch_size_dependence")))
    assert sanity_checks(s, r, table).empty
