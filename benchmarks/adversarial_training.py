"""Wall time of standard training vs adversarial training (FGSM with random start, PGD).

One recipe's network and data (default ``digits_cnn``), ``--epochs`` epochs each (the
recipe's batch size, learning rate and seed), trained three ways, nothing cached:

* **standard**: the recipe's own training loop (what :func:`advharness.zoo.recipes.load_recipe`
  runs);
* **FGSM-RS**: ``train_defended``'s adversarial training, ``method: fgsm_rs`` (ART
  ``AdversarialTrainer`` + ``ProjectedGradientDescent(max_iter=1, num_random_init=1)``),
  eps ``--eps``, step 1.25 eps (Wong et al. 2020), ratio 1;
* **PGD**: the same with ``method: pgd``, ``--pgd-steps`` steps of 2.5 eps / steps.

After one warm-up of each (imports, tf.function traces), each of ``--runs`` rounds trains
all three, in an order rotated every round; times are medians over rounds, and a ratio is
the median over rounds of the ratio within a round, with its interquartile range.

    .venv/bin/python benchmarks/adversarial_training.py --runs 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from advharness.config.catalogue import RECIPES
from advharness.zoo.data import load_dataset
from advharness.zoo.defense_training import TRAINERS
from advharness.zoo.recipes import BACKENDS

log = logging.getLogger("benchmarks.adversarial_training")


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q = np.percentile(values, [25, 50, 75])
    return float(q[0]), float(q[1]), float(q[2])


def bench(name: str, framework: str, epochs: int, runs: int, eps: float, pgd_steps: int) -> dict[str, Any]:
    if framework == "tensorflow":
        from advharness.core.quiet import import_tensorflow

        import_tensorflow()
    recipe = dataclasses.replace(RECIPES[name], epochs=epochs)
    train = load_dataset(recipe.dataset, "train")
    at = TRAINERS["adversarial_training"]
    fgsm_rs = {
        "method": "fgsm_rs",
        "eps": eps,
        "step_size": 1.25 * eps,
        "steps": 1,
        "ratio": 1.0,
        "epochs": epochs,
    }
    pgd = {**fgsm_rs, "method": "pgd", "steps": pgd_steps, "step_size": 2.5 * eps / pgd_steps}
    ways: dict[str, Callable[[], Any]] = {
        "standard": lambda: BACKENDS[framework].train(recipe, train),
        "fgsm_rs": lambda: at(recipe, framework, train, fgsm_rs),
        "pgd": lambda: at(recipe, framework, train, pgd),
    }
    warm = dataclasses.replace(recipe, epochs=1)
    BACKENDS[framework].train(warm, train)
    at(warm, framework, train, {**fgsm_rs, "epochs": 1})
    at(warm, framework, train, {**pgd, "epochs": 1})
    order = list(ways)
    t: dict[str, list[float]] = {k: [] for k in ways}
    for r in range(runs):
        for k in order[r % 3 :] + order[: r % 3]:
            t0 = time.perf_counter()
            ways[k]()
            t[k].append(time.perf_counter() - t0)
    ratios = {
        "fgsm_rs/standard": [a / b for a, b in zip(t["fgsm_rs"], t["standard"], strict=True)],
        "pgd/fgsm_rs": [a / b for a, b in zip(t["pgd"], t["fgsm_rs"], strict=True)],
    }
    row = {
        "recipe": name,
        "framework": framework,
        "epochs": epochs,
        "n_train": len(train.x),
        **{f"{k}_s": statistics.median(v) for k, v in t.items()},
        **{k: quartiles(v) for k, v in ratios.items()},
    }
    log.info("%s", json.dumps(row))
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", nargs="+", default=["digits_cnn"], choices=sorted(RECIPES))
    p.add_argument("--framework", nargs="+", default=["torch", "tensorflow"])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--eps", type=float, default=0.2)
    p.add_argument("--pgd-steps", type=int, default=7)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # the libraries' INFO: off
    log.setLevel(logging.INFO)
    rows = [
        bench(name, fw, args.epochs, args.runs, args.eps, args.pgd_steps)
        for name in args.recipes
        for fw in args.framework
    ]
    lines = [
        "| recipe | framework | epochs | standard s | FGSM-RS s | PGD s | FGSM-RS / standard (IQR) "
        "| PGD / FGSM-RS (IQR) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a, b = r["fgsm_rs/standard"], r["pgd/fgsm_rs"]
        lines.append(
            f"| {r['recipe']} | {r['framework']} | {r['epochs']} | {r['standard_s']:.2f} | "
            f"{r['fgsm_rs_s']:.2f} | {r['pgd_s']:.2f} | {a[1]:.2f} ({a[0]:.2f}-{a[2]:.2f}) | "
            f"{b[1]:.2f} ({b[0]:.2f}-{b[2]:.2f}) |"
        )
    log.info("\n%s", "\n".join(lines))


if __name__ == "__main__":
    main()
