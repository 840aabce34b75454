"""Harness overhead: the harness's attack path vs calling each library directly.

Same model (the ``mnist_cnn`` recipe), same batch (256 MNIST test images), FGSM (eps 0.3)
and PGD-40 (L-inf, eps 0.3, step 0.01, no random start). For each library:

* ``direct``  - the library called by hand on the raw model (no counting wrapper);
* ``harness`` - ``adapter.run`` through the counting wrapper (query counting on);
* ``cell``    - the whole harness cell: attack + referee (one more forward pass).

Timings alternate direct/harness in each of ``--runs`` rounds (after one warm-up round);
the table reports medians and ratios. PGD-40 is also reported against the bare framework
cost of 40 forward+backward passes on the same batch.

    .venv/bin/python benchmarks/overhead.py --framework torch --runs 7
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
from advharness.cells.cell import CellInputs
from advharness.cells.dispatch import run_cell
from advharness.config.spec import AttackSpec
from advharness.models.layout import to_layout
from advharness.zoo.data import load_dataset
from advharness.zoo.recipes import load_recipe

EPS, STEP, STEPS = 0.3, 0.01, 40
SPECS = {
    "fgsm": AttackSpec(attack="fgsm", eps=EPS).resolve(),
    "pgd40": AttackSpec(attack="pgd", eps=EPS, steps=STEPS, step_size=STEP).resolve(),
}


def direct_art(model: Any, raw: Any, attack: str, x: np.ndarray, y: np.ndarray) -> Callable[[], Any]:
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent

    if model.framework == "torch":
        import torch
        from art.estimators.classification import PyTorchClassifier

        est = PyTorchClassifier(
            model=raw,
            loss=torch.nn.CrossEntropyLoss(),
            input_shape=model.input_shape,
            nb_classes=10,
            clip_values=(0.0, 1.0),
            channels_first=True,
            device_type="cpu",
        )
    else:
        import keras
        from art.estimators.classification import TensorFlowV2Classifier

        est = TensorFlowV2Classifier(
            model=raw,
            nb_classes=10,
            input_shape=model.input_shape,
            clip_values=(0.0, 1.0),
            loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            channels_first=False,
        )
    onehot = np.eye(10, dtype=np.float32)[y]
    if attack == "fgsm":
        a: Any = FastGradientMethod(
            est,
            norm=np.inf,
            eps=EPS,
            eps_step=EPS,
            targeted=False,
            num_random_init=0,
            batch_size=256,
            minimal=False,
            summary_writer=False,
        )
    else:
        a = ProjectedGradientDescent(
            est,
            norm=np.inf,
            eps=EPS,
            eps_step=STEP,
            decay=None,
            max_iter=STEPS,
            targeted=False,
            num_random_init=0,
            batch_size=256,
            random_eps=False,
            summary_writer=False,
            verbose=False,
        )
    return lambda: a.generate(x, y=onehot)


def direct_foolbox(model: Any, raw: Any, attack: str, x: np.ndarray, y: np.ndarray) -> Callable[[], Any]:
    import foolbox as fb

    fmodel = (
        fb.PyTorchModel(raw, bounds=(0, 1), device="cpu")
        if model.framework == "torch"
        else fb.TensorFlowModel(raw, bounds=(0, 1), device="/cpu:0")
    )
    xt, yt = model.to_tensor(x), _labels(model, y)
    a: Any = (
        fb.attacks.LinfFastGradientAttack(random_start=False)
        if attack == "fgsm"
        else fb.attacks.LinfPGD(abs_stepsize=STEP, steps=STEPS, random_start=False)
    )
    return lambda: a(fmodel, xt, fb.criteria.Misclassification(yt), epsilons=EPS)


def direct_cleverhans(model: Any, raw: Any, attack: str, x: np.ndarray, y: np.ndarray) -> Callable[[], Any]:
    sub = "torch" if model.framework == "torch" else "tf2"
    fgm = __import__(f"cleverhans.{sub}.attacks.fast_gradient_method", fromlist=["x"])
    pgd = __import__(f"cleverhans.{sub}.attacks.projected_gradient_descent", fromlist=["x"])
    xt, yt = model.to_tensor(x), _labels(model, y)
    if attack == "fgsm":
        return lambda: fgm.fast_gradient_method(
            raw, xt, EPS, np.inf, clip_min=0.0, clip_max=1.0, y=yt, targeted=False, sanity_checks=False
        )
    return lambda: pgd.projected_gradient_descent(
        raw,
        xt,
        EPS,
        STEP,
        STEPS,
        np.inf,
        clip_min=0.0,
        clip_max=1.0,
        y=yt,
        targeted=False,
        rand_init=False,
        rand_minmax=EPS,
        sanity_checks=False,
    )


DIRECT = {"art": direct_art, "foolbox": direct_foolbox, "cleverhans": direct_cleverhans}


def _labels(model: Any, y: np.ndarray) -> Any:
    if model.framework == "torch":
        import torch

        return torch.from_numpy(y)
    import tensorflow as tf

    return tf.convert_to_tensor(y)


def bare_grad_passes(model: Any, raw: Any, x: np.ndarray, y: np.ndarray, n: int) -> Callable[[], None]:
    """n forward+backward (input-gradient) passes in the bare framework."""
    if model.framework == "torch":
        import torch

        xt, yt = model.to_tensor(x), torch.from_numpy(y)

        def run_torch() -> None:
            for _ in range(n):
                xv = xt.clone().requires_grad_(True)
                loss = torch.nn.functional.cross_entropy(raw(xv), yt)
                torch.autograd.grad(loss, xv)

        return run_torch
    import tensorflow as tf

    xt, yt = model.to_tensor(x), tf.convert_to_tensor(y)
    ce = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def run_tf() -> None:
        for _ in range(n):
            with tf.GradientTape() as tape:
                tape.watch(xt)
                loss = ce(yt, raw(xt, training=False))
            tape.gradient(loss, xt)

    return run_tf


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench(framework: str, runs: int, batch: int, libraries: list[str]) -> list[dict[str, Any]]:
    model = load_recipe("mnist_cnn", framework)
    raw = model.module if framework == "torch" else model.model
    ds = load_dataset("mnist", "test", n_samples=batch)
    x, y = to_layout(ds.x, model), ds.y
    clean = model.predict(x)
    bare = bare_grad_passes(model, raw, x, y, STEPS)
    bare_t = statistics.median(timed(bare) for _ in range(runs + 1))
    rows = []
    for lib in libraries:
        adapter = get_adapter(lib)
        for name, spec in SPECS.items():
            req = AttackRequest(model, x, y, None, spec, seed=0, batch_size=batch)
            direct = DIRECT[lib](model, raw, "fgsm" if name == "fgsm" else "pgd", x, y)
            harness = lambda req=req, a=adapter: a.run(req)  # noqa: E731
            cell = lambda spec=spec, lib=lib: run_cell(  # noqa: E731
                CellInputs(model, x, y, clean, None), spec, lib, 0, batch
            )
            for f in (direct, harness, cell):  # warm-up: builds estimators, traces tf.functions
                f()
            t: dict[str, list[float]] = {"direct": [], "harness": [], "cell": []}
            for r in range(runs):
                order = ["direct", "harness", "cell"] if r % 2 == 0 else ["cell", "harness", "direct"]
                for k in order:
                    t[k].append(timed({"direct": direct, "harness": harness, "cell": cell}[k]))
            med = {k: statistics.median(v) for k, v in t.items()}
            rows.append(
                {
                    "framework": framework,
                    "library": lib,
                    "attack": name,
                    "direct_s": med["direct"],
                    "harness_s": med["harness"],
                    "cell_s": med["cell"],
                    "harness/direct": med["harness"] / med["direct"],
                    "cell/direct": med["cell"] / med["direct"],
                    "direct/bare40": med["direct"] / bare_t if name == "pgd40" else None,
                    "bare40_s": bare_t,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--framework", nargs="+", default=["torch", "tensorflow"])
    p.add_argument("--libraries", nargs="+", default=["art", "foolbox", "cleverhans"])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--batch", type=int, default=256)
    args = p.parse_args()
    rows = [r for fw in args.framework for r in bench(fw, args.runs, args.batch, args.libraries)]
    print(
        "\n| framework | library | attack | direct s | harness s | harness/direct | cell/direct "
        "| direct/bare 40 f+b |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        bare = f"{r['direct/bare40']:.2f}" if r["direct/bare40"] is not None else ""
        print(
            f"| {r['framework']} | {r['library']} | {r['attack']} | {r['direct_s']:.3f} | "
            f"{r['harness_s']:.3f} | {r['harness/direct']:.3f} | {r['cell/direct']:.3f} | {bare} |"
        )


if __name__ == "__main__":
    main()
