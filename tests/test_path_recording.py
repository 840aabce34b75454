"""White-box path recording: best valid adversarial seen per sample (Indicator I3, silent
success), row attribution, and loss traces (Indicator I4), in torch and TF."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from advharness.adapters.base import AttackOutput, AttackRequest, LibraryCall
from advharness.cells.cell import CellInputs, attack_batch
from advharness.cells.recording import make_recorder
from advharness.config.spec import AttackSpec, ResolvedSpec
from advharness.judging.trace import LossTraces
from advharness.models.base import WrappedModel

#: "tensorflow-device": TF with the recorder's eager-TF-ops side (what a GPU runs) forced
#: on the CPU, where it would otherwise work in NumPy.
FRAMEWORKS = ("torch", "tensorflow", "tensorflow-device")
#: Four separated originals, each with x0 > x1 (class 0 of :func:`linear_model`).
X = np.array(
    [[0.6, 0.2, 0.1, 0.9], [0.9, 0.5, 0.8, 0.1], [0.5, 0.1, 0.5, 0.5], [0.8, 0.3, 0.2, 0.2]], np.float32
)
Y = np.zeros(4, np.int64)


def linear_model(framework: str) -> WrappedModel:
    """Two classes on four features: class 0 iff x0 > x1 (logits x0 - x1 and x1 - x0)."""
    w = np.array([[1.0, -1.0, 0.0, 0.0], [-1.0, 1.0, 0.0, 0.0]], np.float32)
    if framework == "torch":
        import torch

        from advharness.models.torch_model import TorchModel

        net = torch.nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            net.weight.copy_(torch.from_numpy(w))
        return TorchModel(net, input_shape=(4,), nb_classes=2, name="lin-torch")
    import keras

    from advharness.models.tf_model import TFModel
    from advharness.models.tf_path import TFPathOps

    knet = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, use_bias=False)])
    knet.layers[0].set_weights([w.T])
    model = TFModel(knet, input_shape=(4,), nb_classes=2, name="lin-tf")
    if framework == "tensorflow-device":
        model._make_path_ops = lambda x, norm, sep, remember: TFPathOps(  # type: ignore[method-assign, assignment]
            x, norm, sep, remember, on_host=False
        )
    return model


def forward(model: WrappedModel, rows: np.ndarray) -> None:
    """One forward pass of ``rows`` through the counted callable, as a library makes it."""
    model.counted(model.to_tensor(np.asarray(rows, np.float32)))


def pgd(**kw: Any) -> ResolvedSpec:
    return AttackSpec(attack="pgd", **{"eps": 0.3, "steps": 5, "step_size": 0.05, **kw}).resolve()


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_silent_success_from_rows_fed_to_the_wrapper(fw: str) -> None:
    """A valid adversarial on the path, then back to the original: seen, silent; rows that
    cross the boundary outside the eps-ball or the box are not valid."""
    m = linear_model(fw)
    rec = make_recorder(m, X, Y, None, m.predict(X), pgd())
    path = X.copy()
    path[0] = [0.45, 0.5, 0.1, 1.1]  # sample 0: crosses inside the ball, outside the box
    path[1, 1] = 0.95  # sample 1: crosses, L-inf 0.45 > eps 0.3
    path[2, :2] = [0.35, 0.4]  # sample 2: crosses inside the ball (L-inf 0.3): valid
    with m.with_access("white-box"), m.with_recorder(rec):
        forward(m, X)
        forward(m, path)
        forward(m, X)  # the attack returns to the originals
    cols = rec.columns(success=np.zeros(4, bool))
    assert cols["seen_success"].tolist() == [False, False, True, False]
    assert cols["silent_success"].tolist() == [False, False, True, False]
    assert cols["seen_norm"][2] == pytest.approx(0.3, abs=1e-6)
    assert np.isinf(cols["seen_norm"][[0, 1, 3]]).all()
    assert np.allclose(rec.best_seen(), np.where(np.arange(4)[:, None] == 2, path, X))
    assert cols["loss_trace_length"].tolist() == [3, 3, 3, 3]
    assert rec.rows == 12 and rec.rows_ambiguous == 0
    # returned a success: not silent
    assert not rec.columns(success=np.array([0, 0, 1, 0], bool))["silent_success"].any()


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_rows_out_of_order_subsets_and_ties(fw: str) -> None:
    """Rows in another order or a subset go to their nearest original when that is certain;
    a row equally far from two originals is counted ambiguous and not used."""
    m = linear_model(fw)
    spec = AttackSpec(attack="deepfool", norm="l2").resolve()  # minimum-norm: no eps
    rec = make_recorder(m, X, Y, None, m.predict(X), spec)
    moved = X[[3, 0, 2]].copy()
    moved[0, 1] += 0.02  # sample 3, nearly the original, still class 0
    moved[2, :2] = [0.3, 0.31]  # sample 2, crossed: by its place (L2 0.29, past half its separation)
    middle = (X[0] + X[3]) / 2  # as far from sample 0 as from sample 3
    with m.with_access("white-box"), m.with_recorder(rec):
        forward(m, moved)
        forward(m, middle[None])
        forward(m, X[2:])  # the last chunk
    cols = rec.columns(success=np.zeros(4, bool))
    assert rec.rows_ambiguous == 1
    assert cols["loss_trace_length"].tolist() == [1, 0, 2, 2]
    assert cols["seen_success"].tolist() == [False, False, True, False]
    assert cols["seen_norm"][2] == pytest.approx(np.linalg.norm(moved[2] - X[2]), rel=1e-5)


class Oscillating:
    """A white-box "attack" whose path passes through an adversarial point inside the ball
    and which returns the point before it (the originals): a silent success everywhere."""

    name = "oscillating"

    def import_library(self, framework: str) -> None:
        return None

    def run(self, request: AttackRequest) -> AttackOutput:
        x, eps = request.x, float(request.spec.eps or 0)
        step = np.zeros_like(x)
        step[:, 0], step[:, 1] = -eps, eps  # x0 - x1 falls by 2 eps (0.44)
        for chunk in range(0, len(x), request.batch_size):
            part = slice(chunk, chunk + request.batch_size)
            forward(request.model, x[part])
            forward(request.model, np.clip(x[part] + step[part], 0, 1))
        return AttackOutput(x.copy(), LibraryCall("oscillating", {}))


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_a_cell_flags_silent_successes(fw: str) -> None:
    m = linear_model(fw)
    spec = pgd(eps=0.22)
    inputs = CellInputs(m, X, Y, m.predict(X), None)
    with m.with_access("white-box"):
        res = attack_batch(Oscillating(), inputs, spec, 0, 3, {})
    assert res.records is not None and res.x_seen is not None and res.traces is not None
    crossed = (X[:, 0] - X[:, 1]) < 0.44  # 2 eps: samples 0, 1, 2
    assert res.records["silent_success"].tolist() == crossed.tolist()
    assert res.summary["n_silent_success"] == crossed.sum() > 0
    assert not res.records["success"].any()
    assert res.summary["path_rows"] == 8 and res.summary["path_rows_ambiguous"] == 0
    assert res.traces["loss"].shape == (4, 2) and res.traces["length"].tolist() == [2, 2, 2, 2]
    moved = X + np.array([-0.22, 0.22, 0, 0], np.float32)
    assert np.allclose(res.x_seen[crossed], moved[crossed])
    assert np.allclose(res.x_seen[~crossed], X[~crossed])


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from advharness.zoo.data import load_dataset

    ds = load_dataset("digits", n_samples=12)
    return ds.x, ds.y


def _run(fw: str, lib: str, spec: ResolvedSpec, x: np.ndarray, y: np.ndarray, bs: int) -> Any:
    from advharness.cells.dispatch import run_cell
    from advharness.models.layout import to_layout
    from advharness.zoo.recipes import load_recipe

    m = load_recipe("digits_mlp", fw)
    xm = to_layout(x, m)
    res = run_cell(CellInputs(m, xm, y, m.predict(xm), None), spec, lib, 0, bs)
    assert res.summary["status"] == "ok", res.summary.get("reason")
    return res


@pytest.mark.parametrize(("fw", "lib"), [("torch", "foolbox"), ("tensorflow", "cleverhans")])
def test_a_normal_pgd_run_is_quiet(fw: str, lib: str, digits: tuple[np.ndarray, np.ndarray]) -> None:
    """Every counted row is attributed; no silent success; Foolbox checks its returned
    points through the model, so each success was also seen. (CleverHans TF2 runs its
    gradient step compiled: the rows reach the recorder through a ``tf.py_function``.)"""
    res = _run(fw, lib, pgd(eps=0.1, steps=10, step_size=0.02), *digits, 5)
    s, r = res.summary, res.records
    assert s["path_rows"] == round(s["forward_per_sample"] * len(r)) > 0
    assert s["path_rows_ambiguous"] == 0 and s["n_silent_success"] == 0
    assert r["success"].any()
    if lib == "foolbox":
        assert (r["seen_success"] >= r["success"]).all()
    seen = r[r["seen_success"]]
    assert (seen["seen_norm"] <= 0.1 * (1 + 1e-5) + 1e-6).all()


def test_attribution_across_chunks_and_restarts(digits: tuple[np.ndarray, np.ndarray]) -> None:
    """ART re-batches by batch_size (here 5 of 12: chunks of 5, 5, 2) and the harness re-runs
    the batch per restart: every row is attributed, each sample once per forward pass."""
    x, y = digits
    one = _run("torch", "art", pgd(eps=0.1, steps=4, step_size=0.02, random_start=True), x, y, 5)
    two = _run("torch", "art", pgd(eps=0.1, steps=4, step_size=0.02, random_start=True, restarts=2), x, y, 5)
    for res in (one, two):
        s, lengths = res.summary, res.records["loss_trace_length"]
        assert s["path_rows_ambiguous"] == 0
        assert lengths.nunique() == 1 and lengths.sum() == s["path_rows"] > 0
    # each restart re-runs the whole batch
    assert (two.records["loss_trace_length"] == 2 * one.records["loss_trace_length"]).all()


@pytest.mark.parametrize(("fw", "lib"), [("torch", "foolbox"), ("tensorflow", "cleverhans")])
def test_incomplete_optimization_fires_for_a_short_pgd(
    fw: str, lib: str, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    res = _run(fw, lib, pgd(eps=0.05, steps=2, step_size=1e-4), *digits, 12)
    r = res.records
    failed = r["correct"] & ~r["success"]
    assert failed.sum() > 0
    assert (r.loc[failed, "loss_trace_tail_range"] > 0.05).all()
    assert r["incomplete_optimization"].tolist() == failed.tolist()
    assert res.summary["n_incomplete_optimization"] == failed.sum()


def test_incomplete_optimization_is_quiet_for_a_converged_pgd(digits: tuple[np.ndarray, np.ndarray]) -> None:
    res = _run("torch", "foolbox", pgd(eps=0.05, steps=150, step_size=0.01), *digits, 12)
    r = res.records
    assert (r["correct"] & ~r["success"]).sum() > 0  # failures to explain
    assert res.summary["n_incomplete_optimization"] == 0
    assert (r["loss_trace_tail_range"] <= 0.05).all()


def test_incomplete_optimization_is_never_set_for_a_single_step_attack(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    """FGSM has no iterations to converge: a falling loss trace is not I4 there."""
    fgsm = AttackSpec(attack="fgsm", eps=0.05).resolve()
    res = _run("torch", "foolbox", fgsm, *digits, 12)
    r = res.records
    failed = r["correct"] & ~r["success"]
    assert failed.sum() > 0 and (r.loc[failed, "loss_trace_tail_range"] > 0.05).any()  # it would fire
    assert not r["incomplete_optimization"].any()
    assert res.summary["n_incomplete_optimization"] == 0


def naive_tail_range(trace: np.ndarray, window: int = 10) -> float:
    lo, hi = trace.min(), trace.max()
    if hi == lo:
        return 0.0
    running = np.minimum.accumulate((trace.astype(np.float64) - lo) / (hi - lo))
    w = min(window, len(trace))
    return float(running[-w:].max() - running[-w:].min())


def test_loss_trace_ring_is_exact_past_its_capacity() -> None:
    rng = np.random.default_rng(0)
    traces = LossTraces(3, cap=16)
    full: list[list[float]] = [[], [], []]
    for t in range(60):
        samples = np.array([0, 2] if t % 3 else [0, 1, 2])
        values = (rng.normal(size=len(samples)) - 0.05 * t).astype(np.float32)
        traces.append(samples, values)
        for s, v in zip(samples, values, strict=True):
            full[s].append(float(v))
    got = traces.tail_range()
    for s in range(3):
        assert got[s] == pytest.approx(naive_tail_range(np.array(full[s], np.float32)), abs=1e-6)
    arrays = traces.arrays()
    assert arrays["loss"].shape == (3, 16) and arrays["length"].tolist() == [60, 20, 60]
    assert np.allclose(arrays["loss"][0], np.array(full[0][-16:], np.float32))
    assert arrays["start"].tolist() == [44, 4, 44]


def test_transfer_rows_have_no_path_columns(digits: tuple[np.ndarray, np.ndarray]) -> None:
    from advharness import run_attacks
    from advharness.zoo.recipes import load_recipe

    x, y = digits
    models = [load_recipe("digits_mlp", "torch"), load_recipe("digits_cnn", "torch")]
    res = run_attacks(
        models,
        x,
        y,
        [{"attack": "fgsm", "eps": 0.1}, {"attack": "fgsm", "eps": 0.1, "source": models[0].name}],
        ["foolbox"],
        probes=False,
    )
    s = res.summary.set_index("threat_model")
    assert s.loc["transfer", "n_silent_success"] != s.loc["transfer", "n_silent_success"]  # NaN
    assert pd.notna(s.loc["white-box", "n_silent_success"]).all()
    white = res.records[res.records["threat_model"] == "white-box"]
    assert white["seen_success"].notna().all()


def test_save_traces_on_a_stored_run_fills_in_the_white_box_cells(tmp_path: Any) -> None:
    from advharness import read_traces, run_experiment
    from advharness.config.experiment import parse_experiment

    data = {
        "name": "traced",
        "data": {"dataset": "digits", "n_samples": 6},
        "models": [{"recipe": "digits_mlp", "framework": "torch"}],
        "libraries": ["art"],
        "attacks": [
            {"attack": "pgd", "eps": 0.1, "steps": 3, "step_size": 0.05},
            {"attack": "hsj", "steps": 1, "budget": 20, "params": {"max_evals": 10, "init_evals": 5}},
        ],
    }
    first = run_experiment(parse_experiment(data), tmp_path, backend="inline")
    assert read_traces(tmp_path / "traced") == {}
    assert first.summary.set_index("threat_model").loc["white-box", "n_silent_success"] == 0
    traced = parse_experiment(data, overrides=["save_traces=true"])
    again = run_experiment(traced, tmp_path, backend="inline")
    assert again.manifest["cells_run_now"] == 1  # the white-box cell; black-box cells have none
    (cell,) = read_traces(tmp_path / "traced")
    assert again.summary.loc[again.summary["cell"] == cell, "threat_model"].item() == "white-box"
    assert run_experiment(traced, tmp_path, backend="inline").manifest["cells_run_now"] == 0


def test_compiled_libraries_record_with_one_inter_op_thread() -> None:
    """As in the workers (one TF inter-op thread): the recorder, reached through a
    ``tf.py_function`` inside CleverHans' and ART's compiled functions, must not wait for
    TF's thread pool (a ``tf.function`` called there deadlocks)."""
    import os
    import subprocess
    import sys

    script = """
import numpy as np
from advharness.cells.cell import CellInputs
from advharness.cells.dispatch import run_cell
from advharness.config.spec import AttackSpec
from advharness.models.layout import to_layout
from advharness.zoo.data import load_dataset
from advharness.zoo.recipes import load_recipe
m = load_recipe("digits_mlp", "tensorflow")
ds = load_dataset("digits", n_samples=6)
x = to_layout(ds.x, m)
spec = AttackSpec(attack="pgd", eps=0.1, steps=3, step_size=0.05).resolve()
for lib in ("cleverhans", "art"):
    s = run_cell(CellInputs(m, x, ds.y, m.predict(x), None), spec, lib, 0, 4).summary
    assert s["status"] == "ok" and s["path_rows"] == round(s["forward_per_sample"] * 6), s
print("recorded")
"""
    threads = {"TF_NUM_INTEROP_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env = {**os.environ, **threads}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "recorded" in out.stdout, out.stderr[-2000:]
