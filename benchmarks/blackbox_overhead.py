"""Black-box overhead: the query-only oracle + per-sample ledger vs calling the library directly.

Model: the ``mnist_cnn`` recipe; inputs: the first ``--n`` MNIST test images the model
classifies correctly. Attacks: HopSkipJump (L2; ART, Foolbox, CleverHans torch), Square
(L-inf; ART, the only library that has it) and Boundary (L2; ART, Foolbox). Timings:

* ``direct_batch`` - the library called by hand on the raw model, whole batch at once;
* ``direct_each``  - the same call made once per sample (the harness's calling pattern);
* ``harness``      - the harness's black-box path per sample (``query_mode: per-sample``):
  one call per sample through the query-only oracle (decision-/score-based) with the ledger
  counting every sample's queries;
* ``harness_batched`` - the harness's batched path (``query_mode: batched``): one call for the
  batch through the oracle, the batched ledger attributing every row to its sample; its
  adversarials are checked to be bit-identical to ``direct_batch``'s;
* with ``--floor`` (torch): the library called per sample on two minimal stand-ins for an
  oracle, with no harness code at all. ``floor_answer`` returns what the threat model lets
  an oracle answer, computed the cheapest way (a one-hot top-1 label for a decision-based
  attack, the logits for a score-based one); ``floor_record`` also keeps a copy of every
  query's rows, the least an exact referee must do. They show what any enforcing, exactly
  counting oracle costs on this model, whatever its bookkeeping.

``default mode`` is the mode a cell of the pair runs in unless its spec says otherwise
(``advharness.config.querymode``), and ``harness default / direct batch`` the ratio of that
mode's harness path to the direct batched call: what a user pays over calling the library.
``harness/direct_each`` is the cost of the oracle and the per-sample counting;
``harness/direct_batch`` adds the cost of calling the library once per sample. Every run
re-seeds NumPy/torch/TF identically, and the per-sample variants' adversarials are checked to
be bit-identical (the oracle answers exactly what the model says), so they do the same work.
Each round runs every variant once on all ``--n`` inputs, in alternating order; a ratio is the
median over rounds of the ratio within a round (paired: both runs saw nearly the same machine
state, which drifts by several percent here), with its interquartile range. Seconds are
medians over rounds. A warm-up round comes first.

    .venv/bin/python benchmarks/blackbox_overhead.py --framework torch --runs 7 --floor
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from advharness.adapters import get_adapter
from advharness.adapters.base import AttackRequest
from advharness.cells.blackbox import run_blackbox
from advharness.cells.cell import make_ledger
from advharness.config.querymode import default_query_mode
from advharness.config.spec import AttackSpec
from advharness.core.seeding import seed_everything
from advharness.models.layout import to_layout
from advharness.zoo.data import load_dataset
from advharness.zoo.recipes import load_recipe

HSJ = {"steps": 5, "max_evals": 100, "init_evals": 20}
SQUARE = {"eps": 0.1, "steps": 300, "p_init": 0.05}
BOUNDARY = {"steps": 200, "spherical_step": 0.01, "source_step": 0.01, "step_adaptation": 1.5}
SPECS = {
    "hsj": AttackSpec(
        attack="hsj",
        norm="l2",
        steps=HSJ["steps"],
        params={"max_evals": HSJ["max_evals"], "init_evals": HSJ["init_evals"]},
    ),
    "square": AttackSpec(
        attack="square",
        norm="linf",
        eps=SQUARE["eps"],
        steps=SQUARE["steps"],
        params={"p_init": SQUARE["p_init"]},
    ),
    "boundary": AttackSpec(
        attack="boundary",
        norm="l2",
        steps=BOUNDARY["steps"],
        params={k: BOUNDARY[k] for k in ("spherical_step", "source_step", "step_adaptation")},
    ),
}
CASES = [
    ("art", "hsj"),
    ("foolbox", "hsj"),
    ("cleverhans", "hsj"),
    ("art", "square"),
    ("art", "boundary"),
    ("foolbox", "boundary"),
]
Attack = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (x, y) -> x_adv, numpy


def _art_estimator(model: Any, raw: Any) -> Any:
    if model.framework == "torch":
        import torch
        from art.estimators.classification import PyTorchClassifier

        class Float32(torch.nn.Module):  # ART on numpy 2 feeds float64 (ART #2475)
            def __init__(self) -> None:
                super().__init__()
                self.raw = raw

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.raw(x.float())

        return PyTorchClassifier(
            model=Float32().eval(),
            loss=torch.nn.CrossEntropyLoss(),
            input_shape=model.input_shape,
            nb_classes=10,
            clip_values=(0.0, 1.0),
            channels_first=True,
            device_type="cpu",
        )
    import keras
    from art.estimators.classification import TensorFlowV2Classifier

    return TensorFlowV2Classifier(
        model=raw,
        nb_classes=10,
        input_shape=model.input_shape,
        clip_values=(0.0, 1.0),
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        channels_first=False,
    )


def direct_art(model: Any, raw: Any, attack: str) -> Attack:
    from art.attacks.evasion import BoundaryAttack, HopSkipJump, SquareAttack

    est = _art_estimator(model, raw)
    if attack == "boundary":
        a: Any = BoundaryAttack(
            est,
            batch_size=64,
            targeted=False,
            delta=BOUNDARY["spherical_step"],
            epsilon=BOUNDARY["source_step"],
            step_adapt=1.0 / BOUNDARY["step_adaptation"],
            max_iter=BOUNDARY["steps"],
            num_trial=25,
            sample_size=20,
            init_size=100,
            min_epsilon=0.0,
            verbose=False,
        )
    elif attack == "hsj":
        a = HopSkipJump(
            est,
            batch_size=64,
            targeted=False,
            norm=2,
            max_iter=HSJ["steps"],
            max_eval=HSJ["max_evals"],
            init_eval=HSJ["init_evals"],
            init_size=100,
            verbose=False,
        )
    else:
        a = SquareAttack(
            est,
            norm=np.inf,
            adv_criterion=None,
            loss=None,
            max_iter=SQUARE["steps"],
            eps=SQUARE["eps"],
            p_init=SQUARE["p_init"],
            nb_restarts=1,
            batch_size=64,
            verbose=False,
        )
    from advharness.adapters.art.blackbox import seeded_random_state

    def run(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        # ART HSJ seeds its start from OS entropy; the harness's fix, applied here too, makes
        # both sides reproducible (and so comparable bit for bit)
        with seeded_random_state():
            return np.asarray(a.generate(x, y=np.eye(10, dtype=np.float32)[y]))

    return run


def direct_foolbox(model: Any, raw: Any, attack: str) -> Attack:
    import foolbox as fb

    fmodel = (
        fb.PyTorchModel(raw, bounds=(0, 1), device="cpu", preprocessing=None)
        if model.framework == "torch"
        else fb.TensorFlowModel(raw, bounds=(0, 1), device="/CPU:0", preprocessing=None)
    )
    init = fb.attacks.LinearSearchBlendedUniformNoiseAttack(
        distance=fb.distances.l2, directions=1000, steps=50
    )
    a: Any
    if attack == "boundary":
        a = fb.attacks.BoundaryAttack(
            init_attack=init,
            steps=BOUNDARY["steps"],
            spherical_step=BOUNDARY["spherical_step"],
            source_step=BOUNDARY["source_step"],
            source_step_convergance=1e-7,
            step_adaptation=BOUNDARY["step_adaptation"],
            tensorboard=False,
            update_stats_every_k=10,
        )
    else:
        a = fb.attacks.HopSkipJumpAttack(
            init_attack=init,
            steps=HSJ["steps"],
            initial_gradient_eval_steps=HSJ["init_evals"],
            max_gradient_eval_steps=HSJ["max_evals"],
            stepsize_search="geometric_progression",
            gamma=1.0,
            tensorboard=False,
            constraint="l2",
        )

    def run(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        import eagerpy as ep

        xt = model.to_tensor(x)
        labels = ep.from_numpy(ep.astensor(xt), y.astype(np.int64)).raw
        raw_adv, _, _ = a(fmodel, xt, fb.criteria.Misclassification(labels), epsilons=None)
        return np.asarray(ep.astensor(raw_adv).numpy())

    return run


def direct_cleverhans(model: Any, raw: Any, attack: str) -> Attack:
    from cleverhans.torch.attacks.hop_skip_jump_attack import hop_skip_jump_attack

    def run(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = hop_skip_jump_attack(
            raw,
            model.to_tensor(x),
            2,
            y_target=None,
            image_target=None,
            initial_num_evals=HSJ["init_evals"],
            max_num_evals=HSJ["max_evals"],
            stepsize_search="geometric_progression",
            num_iterations=HSJ["steps"],
            gamma=1.0,
            constraint=2,
            batch_size=64,
            verbose=False,
            clip_min=0.0,
            clip_max=1.0,
        )
        return np.asarray(out.detach().cpu().numpy())

    return run


DIRECT = {"art": direct_art, "foolbox": direct_foolbox, "cleverhans": direct_cleverhans}


def _each(fn: Attack) -> Attack:
    return lambda x, y: np.concatenate([fn(x[i : i + 1], y[i : i + 1]) for i in range(len(x))])


def _floor_module(raw: Any, classes: int, one_hot: bool, record: bool) -> Any:
    """A minimal torch stand-in for a query-only oracle (see the module docstring)."""
    import torch

    class Floor(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.raw = raw
            self.eye = torch.eye(classes)
            self.rows: list[torch.Tensor] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if record:
                if len(self.rows) > 4096:
                    self.rows.clear()
                self.rows.append(x.detach().clone())
            out = self.raw(x)
            return self.eye.index_select(0, out.argmax(1)) if one_hot else out

    return Floor().eval()


def _harness(model: Any, lib: str, attack: str, mode: str = "per-sample") -> Attack:
    adapter = get_adapter(lib)
    spec = SPECS[attack].model_copy(update={"query_mode": mode}).resolve()

    def run(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        from advharness.cells.cell import CellInputs

        req = AttackRequest(model, x, y, None, spec, seed=0, batch_size=64)
        ledger = make_ledger(CellInputs(model, x, y, y, None), spec, lib)
        with model.with_access(spec.threat_model), model.with_ledger(ledger):
            return run_blackbox(adapter, req, ledger, y).x_adv

    return run


def timed(fn: Attack, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    seed_everything(0)
    t0 = time.perf_counter()
    out = fn(x, y)
    return time.perf_counter() - t0, np.asarray(out, dtype=np.float32)


def _paired(times: dict[str, list[float]], key: str, base: str) -> tuple[float, float, float]:
    """Median and quartiles over rounds of ``key``'s time / ``base``'s in the same round."""
    ratios = [a / b for a, b in zip(times[key], times[base], strict=True)]
    q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return statistics.median(ratios), q1, q3


def bench(
    framework: str, runs: int, n: int, cases: list[tuple[str, str]], floor: bool
) -> list[dict[str, Any]]:
    model = load_recipe("mnist_cnn", framework)
    raw = model.module if framework == "torch" else model.model
    ds = load_dataset("mnist", "test", n_samples=4 * n)
    x_all = to_layout(ds.x, model)
    keep = np.flatnonzero(model.predict(x_all) == ds.y)[:n]
    x, y = x_all[keep], ds.y[keep]
    rows = []
    for lib, attack in cases:
        if lib == "cleverhans" and framework != "torch":
            continue  # CleverHans has HSJA for torch only
        direct = DIRECT[lib](model, raw, attack)
        fns: dict[str, Attack] = {
            "direct_batch": direct,
            "direct_each": _each(direct),
            "harness": _harness(model, lib, attack),
            "harness_batched": _harness(model, lib, attack, "batched"),
        }
        if floor:
            one_hot = SPECS[attack].resolve().threat_model == "decision-based"
            for name, record in (("floor_answer", False), ("floor_record", True)):
                stand_in = _floor_module(raw, model.nb_classes, one_hot, record)
                fns[name] = _each(DIRECT[lib](model, stand_in, attack))
        times: dict[str, list[float]] = {k: [] for k in fns}
        for r in range(runs + 1):  # round 0 is the warm-up
            outs = {}
            for k in list(fns) if r % 2 == 0 else list(reversed(fns)):
                dt, outs[k] = timed(fns[k], x, y)
                if r:
                    times[k].append(dt)
            for k, out in outs.items():
                ref = "direct_batch" if k == "harness_batched" else "direct_each"
                if k != "direct_batch" and not np.array_equal(out, outs[ref]):
                    raise SystemExit(f"{lib} {attack}: {k} output differs from {ref}")
        row: dict[str, Any] = {
            "framework": framework,
            "library": lib,
            "attack": attack,
            "n": len(x),
            "runs": runs,
        }
        row.update({f"{k}_s": statistics.median(v) for k, v in times.items()})
        for k in fns:
            if k not in ("direct_batch", "direct_each", "harness_batched"):
                row[f"{k}/direct_each"], row[f"{k}/direct_each_q1"], row[f"{k}/direct_each_q3"] = _paired(
                    times, k, "direct_each"
                )
        row["harness/direct_batch"] = _paired(times, "harness", "direct_batch")[0]
        key = "harness_batched/direct_batch"
        row[key], row[f"{key}_q1"], row[f"{key}_q3"] = _paired(times, "harness_batched", "direct_batch")
        row["default_mode"] = default_query_mode(lib, attack)
        used = "harness_batched" if row["default_mode"] == "batched" else "harness"
        key = "harness_default/direct_batch"
        row[key], row[f"{key}_q1"], row[f"{key}_q3"] = _paired(times, used, "direct_batch")
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def _cell(r: dict[str, Any], key: str) -> str:
    if key not in r:
        return "—"
    return f"{r[key]:.3f} ({r[key + '_q1']:.3f}-{r[key + '_q3']:.3f})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--framework", nargs="+", default=["torch", "tensorflow"], choices=["torch", "tensorflow"])
    p.add_argument("--runs", type=int, default=7, help="timed rounds after the warm-up")
    p.add_argument("--n", type=int, default=8, help="samples (correctly classified)")
    p.add_argument(
        "--cases",
        nargs="+",
        default=[f"{lib}:{att}" for lib, att in CASES],
        help="library:attack pairs (default: all)",
    )
    p.add_argument("--floor", action="store_true", help="also time the minimal oracle stand-ins (torch only)")
    args = p.parse_args()
    cases = [(c.partition(":")[0], c.partition(":")[2]) for c in args.cases]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {unknown}; known: {[f'{a}:{b}' for a, b in CASES]}")
    if args.runs < 1:
        p.error("--runs must be at least 1")
    if args.floor and args.framework != ["torch"]:
        p.error("--floor needs --framework torch (the stand-ins are torch modules)")
    import torch

    torch.set_num_threads(1)
    rows = [r for fw in args.framework for r in bench(fw, args.runs, args.n, cases, args.floor)]
    print(
        "\n| framework | library | attack | direct batch s | direct per-sample s | harness s "
        "| harness / direct per-sample | floor: answer only | floor: answer + record "
        "| harness / direct batch | harness batched s | harness batched / direct batch "
        "| default mode | harness default / direct batch |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['framework']} | {r['library']} | {r['attack']} | {r['direct_batch_s']:.2f} "
            f"| {r['direct_each_s']:.2f} | {r['harness_s']:.2f} "
            f"| {_cell(r, 'harness/direct_each')} | {_cell(r, 'floor_answer/direct_each')} "
            f"| {_cell(r, 'floor_record/direct_each')} | {r['harness/direct_batch']:.2f} "
            f"| {r['harness_batched_s']:.2f} | {_cell(r, 'harness_batched/direct_batch')} "
            f"| {r['default_mode']} | {_cell(r, 'harness_default/direct_batch')} |"
        )


if __name__ == "__main__":
    main()
