"""``device:`` on model entries, and the oracle's device path (labels made on the device,
only what the ledger judges copied to the host), checked on the CPU: nothing here needs a GPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import errors_of, exp_dict

from advharness.cells.cell import CellInputs, CellResult
from advharness.cells.dispatch import run_cell
from advharness.config.experiment import parse_experiment
from advharness.config.querymode import QueryMode
from advharness.config.spec import AttackSpec
from advharness.models import torch_model
from advharness.zoo.recipes import load_recipe


def _unavailable(framework: str) -> str:
    """A GPU index past every one visible here: unavailable on any machine."""
    if framework == "torch":
        import torch

        return f"cuda:{torch.cuda.device_count() if torch.cuda.is_available() else 0}"
    import tensorflow as tf

    return f"cuda:{len(tf.config.list_physical_devices('GPU'))}"


# -- the field ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["gpu", "CUDA", "cuda:", "cuda:x", "cuda:-1", "tpu", ""])
def test_a_misspelt_device_is_a_located_line(bad: str) -> None:
    model = {"recipe": "digits_mlp", "framework": "torch", "device": bad}
    assert errors_of(exp_dict(models=[model])) == [
        f"models[0].device: device must be cpu, cuda or cuda:N (N a GPU index), got {bad!r}"
    ]


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_devices_parse_and_default_to_cpu(framework: str) -> None:
    models = [
        {"recipe": "digits_mlp", "framework": framework, "name": f"m{d}", "device": d}
        for d in ("cpu", "cuda", "cuda:3")
    ]
    exp = parse_experiment(
        exp_dict(models=[*models, {"recipe": "digits_mlp", "framework": framework}]), "e.yaml", ()
    )
    assert [m.device for m in exp.models] == ["cpu", "cuda", "cuda:3", "cpu"]


# -- an unavailable device ------------------------------------------------------------------------
@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_an_unavailable_device_gives_unsupported_rows_naming_it(framework: str, tmp_path: Path) -> None:
    from advharness.config.experiment import Experiment
    from advharness.execution.orchestrate import run_experiment

    device = _unavailable(framework)
    exp = Experiment.model_validate(
        exp_dict(
            data={"dataset": "digits", "n_samples": 8},
            models=[
                {"recipe": "digits_mlp", "framework": "torch"},
                {"recipe": "digits_mlp", "framework": framework, "device": device, "name": "far"},
            ],
            libraries=["art", "foolbox"],
        )
    )
    res = run_experiment(exp, out_dir=tmp_path / "out", backend="inline", progress=False)
    s = res.summary
    assert [(m["name"], m["device"]) for m in res.manifest["models"]] == [("digits_mlp-torch", "cpu")]
    far, near = s[s["model"] == "far"], s[s["model"] != "far"]
    assert len(far) == 2 and len(near) == 2
    assert set(far["status"]) == {"unsupported"}
    (reason,) = set(far["reason"])
    assert reason.startswith(f"device {device} is not available to {framework} here (")
    assert set(near["status"]) == {"ok"}  # the rest of the run is unaffected
    assert set(far["device"]) == {device} and set(near["device"]) == {"cpu"}


def test_the_device_is_recorded_and_keyed_by_kind() -> None:
    """Rows carry the device; a cell on a GPU has its own key (its last bits may differ from
    the CPU's), the same on every GPU index; CPU keys stay what they were."""
    from advharness.execution.plan import plan_cells
    from advharness.zoo.data import load_dataset

    ds = load_dataset("digits", "test", 4, 0, None)
    keys = {}
    for device in ("cpu", "cuda", "cuda:1"):
        model = {"recipe": "digits_mlp", "framework": "torch", "device": device}
        exp = parse_experiment(exp_dict(models=[model], libraries=["art"]), "e.yaml", ())
        (task,) = plan_cells(exp, ds, {})
        assert task.row["device"] == device
        keys[device] = task.key
    assert keys["cpu"] != keys["cuda"] == keys["cuda:1"]


def test_cells_stored_before_the_field_read_as_cpu() -> None:
    import pandas as pd

    from advharness.reporting.run_result import tidy_summary

    s = tidy_summary(pd.DataFrame({"device": [None, "cuda:1"]}))
    assert s["device"].tolist() == ["cpu", "cuda:1"]


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_a_placed_model_reports_its_device_outside_its_parameter_hash(framework: str) -> None:
    m = load_recipe("digits_mlp", framework)
    before = m.parameter_hash()
    m.place("cpu")
    assert m.describe()["device"] == "cpu"
    if framework == "tensorflow":  # placing only records the scope the calls run in
        m.place("cuda:2")
        assert m.describe()["device"] == "cuda:2"
    assert m.parameter_hash() == before


# -- the oracle's device path --------------------------------------------------------------------
def _cell(spec: AttackSpec, lib: str, force: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[CellResult, int]:
    """The cell on a freshly loaded digits MLP (its oracle notes the path when made)."""
    from advharness.zoo.data import load_dataset

    model = load_recipe("digits_mlp", "torch")
    ds = load_dataset("digits", "test", 6, 0, None)
    pred = model.predict(ds.x)
    calls = [0]
    original = torch_model.CountingModule._device_oracle

    def spy(self: Any, *a: Any) -> Any:
        calls[0] += 1
        return original(self, *a)

    monkeypatch.setattr(torch_model.CountingModule, "_device_oracle", spy)
    monkeypatch.setattr(torch_model, "FORCE_DEVICE_PATH", force)
    res = run_cell(CellInputs(model, ds.x, pred, pred, None), spec.resolve(), lib, seed=0, batch_size=3)
    assert res.summary["status"] == "ok", res.summary.get("reason")
    return res, calls[0]


@pytest.mark.parametrize("mode", ["per-sample", "batched"])
@pytest.mark.parametrize(
    ("lib", "attack", "extra"),
    [
        ("art", "square", {"eps": 0.3, "steps": 60, "budget": 40}),  # score-based, fixed budget
        ("foolbox", "hsj", {"steps": 3, "budget": 120}),  # decision-based, minimum norm
    ],
)
def test_the_device_path_gives_the_host_paths_ledger_results(
    lib: str, attack: str, extra: dict[str, Any], mode: QueryMode, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = AttackSpec(
        attack=attack,
        norm="l2" if attack == "hsj" else "linf",
        query_mode=mode,
        query_levels=(10, 40),
        **extra,
    )
    host, host_calls = _cell(spec, lib, False, monkeypatch)
    dev, dev_calls = _cell(spec, lib, True, monkeypatch)
    assert host_calls == 0 and dev_calls > 0  # each path taken where meant
    assert host.records is not None and dev.records is not None
    cols = ["queries", "queries_refused", "first_success_query", "norm_at_q10", "norm_at_q40", "success"]
    assert host.records["queries"].sum() > 0 and host.records["success"].any()  # something to compare
    for c in cols:
        np.testing.assert_array_equal(dev.records[c].to_numpy(), host.records[c].to_numpy(), err_msg=c)
    assert host.x_adv is not None and dev.x_adv is not None
    np.testing.assert_array_equal(dev.x_adv, host.x_adv)


@pytest.mark.parametrize("access", ["score-based", "decision-based"])
def test_the_device_path_copying_only_goal_rows_judges_as_the_host_path(
    access: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queries of several rows, some reaching the goal and some not (the device path copies
    only those to the host), up to and past a budget: same answers, counts, first successes,
    improvements and best adversarials as the host path."""
    import torch

    from advharness.judging.ledger import BudgetExhausted, QueryLedger
    from advharness.zoo.data import load_dataset

    ds = load_dataset("digits", "test", 3, 0, None)
    rng = np.random.default_rng(0)
    scales = np.repeat([0.05, 0.4, 0.8], 4)  # from near the input (goal rarely reached) to far
    queries = [
        [
            np.clip(ds.x[i] + s * rng.standard_normal((5, *ds.x.shape[1:])), 0, 1).astype(np.float32)
            for s in scales
        ]
        for i in range(len(ds.x))
    ]
    partial = [0]  # device-path queries where only some rows reached the goal
    goal_rows = QueryLedger.goal_rows

    def spy(self: QueryLedger, labels: np.ndarray) -> np.ndarray:
        g = goal_rows(self, labels)
        partial[0] += 0 < g.size < len(labels)
        return g

    monkeypatch.setattr(QueryLedger, "goal_rows", spy)
    out: dict[bool, Any] = {}
    for force in (False, True):
        monkeypatch.setattr(torch_model, "FORCE_DEVICE_PATH", force)
        model = load_recipe("digits_mlp", "torch")
        pred = model.predict(ds.x)
        ledger = QueryLedger(
            x=ds.x, y=pred, targets=None, bounds=(0.0, 1.0), norm="l2", eps=None, enforce_eps=False, budget=52
        )
        answers, stops = [], 0
        with model.with_access(access), model.with_ledger(ledger):  # type: ignore[arg-type]
            for i, qs in enumerate(queries):
                ledger.begin(i)
                for q in qs:
                    try:
                        answers.append(model.counted(torch.from_numpy(q)).numpy().copy())
                    except BudgetExhausted:
                        stops += 1
                        break
                ledger.end()
        out[force] = (answers, stops, ledger.tracks)
    (a0, s0, t0), (a1, s1, t1) = out[False], out[True]
    assert partial[0] > 0
    assert s0 == s1 == len(ds.x)  # every sample reached its budget mid-query
    assert len(a0) == len(a1) and all(np.array_equal(u, v) for u, v in zip(a0, a1, strict=True))
    assert sum(len(t.improvements) for t in t0) > len(ds.x)  # improvements to compare
    for h, d in zip(t0, t1, strict=True):
        assert (h.queries, h.over_budget, h.improvements) == (d.queries, d.over_budget, d.improvements)
        assert h.best_x is not None and d.best_x is not None
        np.testing.assert_array_equal(h.best_x, d.best_x)
