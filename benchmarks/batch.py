"""Batch-runner benchmarks: pool scaling, Ray vs pool overhead, worker memory over 100 cells.

* **throughput** - a 16-cell grid (``mnist_cnn`` torch, PGD L-inf, 8 eps x ART/Foolbox) on
  the process pool with 1 and with 2 workers: wall time of the whole run (worker start-up
  included) and the ratio 1-worker / 2-worker time; with small cells (PGD-20 on 64 images,
  ~0.3 s each) and large ones (PGD-40 on 256 images, ~2 s each);
* **ray** - the small grid on a local Ray runtime with 2 CPUs vs the 2-worker pool;
* **memory** - 100 cells (``mnist_cnn`` torch and Keras, FGSM/PGD-5, 3 libraries) on a
  1-worker pool; each cell reports its worker's resident memory; growth from cell 10 to the
  last (target < 10 %).

Every run starts from an empty results directory (nothing is resumed). Medians of
``--runs`` runs for the timings.

    .venv/bin/python benchmarks/batch.py --runs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from advharness.config.experiment import parse_experiment
from advharness.execution.orchestrate import run_experiment


def grid16(n_samples: int, steps: int) -> dict[str, Any]:
    """16 cells: ``mnist_cnn`` torch, PGD L-inf at 8 eps, ART and Foolbox."""
    return {
        "name": "bench16",
        "data": {"dataset": "mnist", "n_samples": n_samples},
        "models": [{"recipe": "mnist_cnn", "framework": "torch"}],
        "libraries": ["art", "foolbox"],
        "attacks": [
            {"attack": "pgd", "eps": round(0.02 * (i + 1), 2), "steps": steps, "step_size": 0.01}
            for i in range(8)
        ],
    }


GRID100: dict[str, Any] = {
    "name": "bench100",
    "data": {"dataset": "mnist", "n_samples": 32},
    "models": [
        {"recipe": "mnist_cnn", "framework": "torch"},
        {"recipe": "mnist_cnn", "framework": "tensorflow"},
    ],
    "libraries": ["art", "foolbox", "cleverhans"],
    "attacks": [
        {"attack": a, "eps": round(0.01 * (i + 1), 2), **extra}
        for i in range(9)
        for a, extra in (("fgsm", {}), ("pgd", {"steps": 5, "step_size": 0.01}))
    ][:17],
}


def timed_run(spec: dict[str, Any], **kw: Any) -> tuple[float, Any]:
    exp = parse_experiment(spec)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = run_experiment(exp, out_dir=Path(tmp) / "run", **kw)
        return time.perf_counter() - t0, res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--skip", nargs="*", default=[], choices=["throughput", "ray", "memory"])
    args = p.parse_args()
    out: dict[str, Any] = {}
    small, large = grid16(64, 20), grid16(256, 40)
    if "throughput" not in args.skip or "ray" not in args.skip:
        for name, grid in (("small cells", small), ("large cells", large)):
            one = statistics.median(timed_run(grid, backend="pool", workers=1)[0] for _ in range(args.runs))
            two = statistics.median(timed_run(grid, backend="pool", workers=2)[0] for _ in range(args.runs))
            out[name] = {"pool_1_worker_s": one, "pool_2_workers_s": two, "speedup": one / two}
            print(json.dumps({name: out[name]}), flush=True)
    if "ray" not in args.skip:
        ray_s = statistics.median(timed_run(small, backend="ray", workers=2)[0] for _ in range(args.runs))
        two = out["small cells"]["pool_2_workers_s"]
        out["ray"] = {"ray_2_cpus_s": ray_s, "pool_2_workers_s": two, "ray/pool": ray_s / two}
        print(json.dumps(out["ray"]), flush=True)
    if "memory" not in args.skip:
        _, res = timed_run(GRID100, backend="pool", workers=1)
        s = res.summary.sort_values("cell")
        rss = s["worker_rss_mb"].to_numpy()
        assert len(rss) == 102 and s["worker_pid"].nunique() == 1, (len(rss), s["worker_pid"])
        out["memory"] = {
            "cells": len(rss),
            "rss_after_cell_10_mb": rss[9],
            "rss_last_mb": rss[-1],
            "peak_mb": rss.max(),
            "growth_after_10": rss[-1] / rss[9] - 1,
        }
        print(json.dumps(out["memory"]), flush=True)


if __name__ == "__main__":
    main()
