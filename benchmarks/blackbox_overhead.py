"""Black-box overhead: the query-only oracle + per-sample ledger vs calling the library directly.

Model: the ``mnist_cnn`` recipe; inputs: the first ``--n`` MNIST test images the model
classifies correctly. Attacks: HopSkipJump (L2; ART, Foolbox, CleverHans torch) and Square
(L-inf; ART, the only library that has it). For each, three timings:

* ``direct_batch`` - the library called by hand on the raw model, whole batch at once;
* ``direct_each``  - the same call made once per sample (the harness's calling pattern);
* ``harness``      - the harness's black-box path: one call per sample through the
  query-only oracle (decision-/score-based) with the ledger counting every sample's queries.

``harness/direct_each`` is the cost of the oracle and the per-sample counting;
``harness/direct_batch`` adds the cost of calling the library once per sample. Every round
re-seeds NumPy/torch/TF identically, and the harness's adversarials are checked to be
bit-identical to ``direct_each``'s (the oracle answers exactly what the model says), so both
do the same work. Rounds alternate the order; medians over ``--runs`` rounds after a warm-up.

    .venv/bin/python benchmarks/blackbox_overhead.py --framework torch --runs 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from adapters import get_adapter
from adapters.base import AttackRequest
from harness.cell import make_ledger, run_per_sample
from harness.data import load_dataset
from harness.recipes import load_recipe
from harness.runner import to_layout
from harness.seeding import seed_everything
from harness.spec import AttackSpec

HSJ = {"steps": 5, "max_evals": 100, "init_evals": 20}
SQUARE = {"eps": 0.1, "steps": 300, "p_init": 0.05}
SPECS = {
    "hsj": AttackSpec(attack="hsj", norm="l2", steps=HSJ["steps"],
                      params={"max_evals": HSJ["max_evals"], "init_evals": HSJ["init_evals"]}),
    "square": AttackSpec(attack="square", norm="linf", eps=SQUARE["eps"], steps=SQUARE["steps"],
                         params={"p_init": SQUARE["p_init"]}),
}
CASES = [("art", "hsj"), ("foolbox", "hsj"), ("cleverhans", "hsj"), ("art", "square")]
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

        return PyTorchClassifier(model=Float32().eval(), loss=torch.nn.CrossEntropyLoss(),
                                 input_shape=model.input_shape, nb_classes=10,
                                 clip_values=(0.0, 1.0), channels_first=True, device_type="cpu")
    import keras
    from art.estimators.classification import TensorFlowV2Classifier

    return TensorFlowV2Classifier(
        model=raw, nb_classes=10, input_shape=model.input_shape, clip_values=(0.0, 1.0),
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        channels_first=False)


def direct_art(model: Any, raw: Any, attack: str) -> Attack:
    from art.attacks.evasion import HopSkipJump, SquareAttack

    est = _art_estimator(model, raw)
    if attack == "hsj":
        a: Any = HopSkipJump(est, batch_size=64, targeted=False, norm=2, max_iter=HSJ["steps"],
                             max_eval=HSJ["max_evals"], init_eval=HSJ["init_evals"],
                             init_size=100, verbose=False)
    else:
        a = SquareAttack(est, norm=np.inf, adv_criterion=None, loss=None, max_iter=SQUARE["steps"],
                         eps=SQUARE["eps"], p_init=SQUARE["p_init"], nb_restarts=1,
                         batch_size=64, verbose=False)
    from adapters.art_blackbox import seeded_random_state

    def run(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        # ART HSJ seeds its start from OS entropy; the harness's fix, applied here too, makes
        # both sides reproducible (and so comparable bit for bit)
        with seeded_random_state():
            return np.asarray(a.generate(x, y=np.eye(10, dtype=np.float32)[y]))
    return run


def direct_foolbox(model: Any, raw: Any, attack: str) -> Attack:
    import foolbox as fb

    fmodel = (fb.PyTorchModel(raw, bounds=(0, 1), device="cpu", preprocessing=None)
              if model.framework == "torch" else
              fb.TensorFlowModel(raw, bounds=(0, 1), device="/CPU:0", preprocessing=None))
    init = fb.attacks.LinearSearchBlendedUniformNoiseAttack(distance=fb.distances.l2,
                                                            directions=1000, steps=50)
    a = fb.attacks.HopSkipJumpAttack(
        init_attack=init, steps=HSJ["steps"], initial_gradient_eval_steps=HSJ["init_evals"],
        max_gradient_eval_steps=HSJ["max_evals"], stepsize_search="geometric_progression",
        gamma=1.0, tensorboard=False, constraint="l2")

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
            raw, model.to_tensor(x), 2, y_target=None, image_target=None,
            initial_num_evals=HSJ["init_evals"], max_num_evals=HSJ["max_evals"],
            stepsize_search="geometric_progression", num_iterations=HSJ["steps"], gamma=1.0,
            constraint=2, batch_size=64, verbose=False, clip_min=0.0, clip_max=1.0)
        return np.asarray(out.detach().cpu().numpy())
    return run


DIRECT = {"art": direct_art, "foolbox": direct_foolbox, "cleverhans": direct_cleverhans}


def _each(fn: Attack) -> Attack:
    return lambda x, y: np.concatenate([fn(x[i:i + 1], y[i:i + 1]) for i in range(len(x))])


def _harness(model: Any, lib: str, attack: str) -> Attack:
    adapter = get_adapter(lib)
    spec = SPECS[attack].resolve()

    def run(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        from harness.cell import CellInputs

        req = AttackRequest(model, x, y, None, spec, seed=0, batch_size=64)
        ledger = make_ledger(CellInputs(model, x, y, y, None), spec)
        with model.with_access(spec.threat_model), model.with_ledger(ledger):
            return run_per_sample(adapter, req, ledger, y).x_adv
    return run


def timed(fn: Attack, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    seed_everything(0)
    t0 = time.perf_counter()
    out = fn(x, y)
    return time.perf_counter() - t0, np.asarray(out, dtype=np.float32)


def bench(framework: str, runs: int, n: int, cases: list[tuple[str, str]]) -> list[dict[str, Any]]:
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
        fns = {"direct_batch": direct, "direct_each": _each(direct),
               "harness": _harness(model, lib, attack)}
        outs = {k: timed(f, x, y)[1] for k, f in fns.items()}  # warm-up
        if not np.array_equal(outs["harness"], outs["direct_each"]):
            raise SystemExit(f"{lib} {attack}: harness output differs from the direct call")
        t: dict[str, list[float]] = {k: [] for k in fns}
        for r in range(runs):
            for k in (list(fns) if r % 2 == 0 else list(reversed(fns))):
                t[k].append(timed(fns[k], x, y)[0])
        med = {k: statistics.median(v) for k, v in t.items()}
        rows.append({"framework": framework, "library": lib, "attack": attack, "n": len(x),
                     **{f"{k}_s": v for k, v in med.items()},
                     "harness/direct_each": med["harness"] / med["direct_each"],
                     "harness/direct_batch": med["harness"] / med["direct_batch"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--framework", nargs="+", default=["torch", "tensorflow"])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--n", type=int, default=8, help="samples (correctly classified)")
    p.add_argument("--cases", nargs="+", default=[f"{lib}:{att}" for lib, att in CASES],
                   help="library:attack pairs (default: all)")
    args = p.parse_args()
    cases = [tuple(c.split(":", 1)) for c in args.cases]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {unknown}; known: {[f'{a}:{b}' for a, b in CASES]}")
    import torch

    torch.set_num_threads(1)
    rows = [r for fw in args.framework for r in bench(fw, args.runs, args.n, cases)]  # type: ignore[arg-type]
    print("\n| framework | library | attack | direct batch s | direct per-sample s | harness s "
          "| harness / direct per-sample | harness / direct batch |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['framework']} | {r['library']} | {r['attack']} | {r['direct_batch_s']:.2f} "
              f"| {r['direct_each_s']:.2f} | {r['harness_s']:.2f} | "
              f"{r['harness/direct_each']:.3f} | {r['harness/direct_batch']:.3f} |")


if __name__ == "__main__":
    main()
