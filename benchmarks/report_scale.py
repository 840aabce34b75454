"""The report at scale: a synthesized results directory of ``--cells`` cells x ``--samples``
samples, written through the real cell store (summary rows from resolved specs and the
referee's own ``judge``/``summarize``, records, adversarials, a plan, a manifest), then
``read_results`` and ``write_report`` (read, build, write) timed in a fresh interpreter,
wall and CPU seconds, with its peak resident memory (``ru_maxrss``) after the imports and
at the end.

    .venv/bin/python benchmarks/report_scale.py --cells 1000 --samples 256

Cells: two models (torch, TensorFlow) x three libraries x attack specs (FGSM, PGD and
DeepFool white-box, Square score-based and HSJ decision-based with query levels) on the
digits test split; the adversarials are random perturbations judged by the referee.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

LIBRARIES = ("art", "foolbox", "cleverhans")
MODELS = (("digits_mlp-torch", "torch"), ("digits_mlp-tensorflow", "tensorflow"))
LEVELS = (10, 100, 1000)


def specs(count: int) -> list[Any]:
    """``count`` resolved specs: grids over eps and steps of five attacks, in turn."""
    from advharness.config.spec import AttackSpec

    grids: list[list[dict[str, Any]]] = [
        [{"attack": "fgsm", "eps": e} for e in np.round(np.linspace(0.01, 0.5, 50), 3)],
        [
            {"attack": "pgd", "eps": e, "steps": s, "step_size": 0.01}
            for e in np.round(np.linspace(0.02, 0.4, 20), 3)
            for s in (5, 10, 20, 40, 80)
        ],
        [{"attack": "deepfool", "steps": s, "eps": 0.5} for s in range(5, 60, 5)],
        [
            {"attack": "square", "eps": e, "budget": 1000, "query_levels": list(LEVELS)}
            for e in np.round(np.linspace(0.05, 0.3, 30), 3)
        ],
        [{"attack": "hsj", "steps": s, "budget": 1000, "query_levels": list(LEVELS)} for s in range(1, 31)],
    ]
    flat = [g[i] for i in range(max(map(len, grids))) for g in grids if i < len(g)]
    if len(flat) < count:
        raise SystemExit(f"at most {len(flat)} specs; ask for fewer cells")
    return [AttackSpec.model_validate(d).resolve() for d in flat[:count]]


def synthesize(root: Path, n_cells: int, n_samples: int, seed: int = 0) -> Path:
    """Write the results directory ``root/scale`` through the cell store."""
    from advharness.cells.cell import query_summary
    from advharness.judging.referee import judge, summarize
    from advharness.reporting.results import versions
    from advharness.reporting.store import CellStore
    from advharness.zoo.data import load_dataset

    rng = np.random.default_rng(seed)
    ds = load_dataset("digits", "test", n_samples)
    x, y = ds.x, ds.y
    n = len(x)
    run = root / "scale"
    store = CellStore(run)
    per_spec = len(MODELS) * len(LIBRARIES)
    plan: list[dict[str, Any]] = []
    for i, spec in enumerate(specs(-(-n_cells // per_spec))):
        for model, framework in MODELS:
            for library in LIBRARIES:
                if len(plan) == n_cells:
                    break
                key = f"{len(plan):024x}"
                cell = spec.for_cell()
                scale = spec.eps if spec.eps is not None else float(rng.uniform(0.2, 1.5))
                noise = rng.standard_normal(x.shape).astype(np.float32)
                if spec.norm == "linf":
                    delta = scale * np.sign(noise)
                else:
                    flat = noise.reshape(n, -1)
                    delta = (flat / np.linalg.norm(flat, axis=1, keepdims=True) * scale).reshape(x.shape)
                x_adv = np.clip(x + delta, 0.0, 1.0).astype(np.float32)
                clean = np.where(rng.random(n) < 0.95, y, (y + 1) % 10)
                adv = np.where(rng.random(n) < rng.uniform(0.2, 1.0), (y + 3) % 10, clean)
                records = judge(
                    x=x,
                    y=y,
                    x_adv=x_adv,
                    clean_pred=clean,
                    adv_pred=adv,
                    bounds=(0.0, 1.0),
                    norm=spec.norm,
                    eps=cell.eps,
                    enforce_eps=spec.kind == "fixed",
                ).records
                row: dict[str, Any] = {
                    **cell.columns(),
                    "status": "ok",
                    "reason": "",
                    "library": library,
                    "library_version": "0",
                    "framework": framework,
                    "model": model,
                    "family": "digits_mlp",
                    "bounds_low": 0.0,
                    "bounds_high": 1.0,
                    "seed": i,
                    "run_seed": 0,
                    "data_sha256": ds.fingerprint(),
                    "batch_size": 256,
                    "spec": json.dumps(cell.to_dict(), sort_keys=True, default=str),
                    "library_call": json.dumps({"callable": f"{library}.{spec.attack}", "kwargs": {}}),
                    "time_s": float(rng.lognormal(0.0, 1.0)),
                    "forward_per_sample": float(cell.steps or 1),
                    "backward_per_sample": float(cell.steps or 1),
                    "queries_per_sample": float(2 * (cell.steps or 1)),
                    "finished_at": time.time(),
                    **summarize(records, spec.norm),
                }
                if spec.threat_model != "white-box":
                    queries = rng.integers(1, 1001, n)
                    first = np.where(records["success"], rng.integers(1, 1001, n), np.nan)
                    records = records.assign(
                        queries=np.where(records["correct"], queries, 0),
                        queries_refused=0,
                        stopped_at_budget=queries >= 1000,
                        first_success_query=np.minimum(first, queries),
                        **{f"norm_at_q{q}": np.where(first <= q, records[spec.norm], np.inf) for q in LEVELS},
                    )
                    row.update(query_summary(records, cell))
                store.write(key, row, records, x_adv)
                plan.append({"key": key, "index": len(plan), "report_eps": spec.eps})
    store.write_plan({"planned_at": time.time(), "clean_accuracy_floor": 0.5, "cells": plan})
    manifest = {
        "experiment": {
            "name": "scale",
            "data": {"dataset": "digits", "split": "test", "n_samples": n_samples, "offset": 0, "path": None},
        },
        "data": {"dataset": "digits", "split": "test", "n": n, "sha256": ds.fingerprint()},
        "models": [
            {"name": m, "framework": fw, "family": "digits_mlp", "input_shape": [1, 8, 8], "layout": "NCHW"}
            for m, fw in MODELS
        ],
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "cells": len(plan),
    }
    (run / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return run


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(run: Path) -> dict[str, float]:
    """Time ``read_results`` alone, then ``write_report`` (which reads again, builds every
    section and writes the files), wall and CPU seconds, in this process."""
    from advharness.reporting.report import write_report
    from advharness.reporting.results import read_results

    base = _maxrss_mib()
    wall, cpu = time.perf_counter(), time.process_time()
    result = read_results(run)
    read_wall, read_cpu = time.perf_counter() - wall, time.process_time() - cpu
    wall, cpu = time.perf_counter(), time.process_time()
    page = write_report(run)
    report_wall, report_cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "summary_rows": len(result.summary),
        "records_rows": len(result.records),
        "read_results_wall_s": round(read_wall, 2),
        "read_results_cpu_s": round(read_cpu, 2),
        "write_report_wall_s": round(report_wall, 2),
        "write_report_cpu_s": round(report_cpu, 2),
        "html_mib": round(page.stat().st_size / 2**20, 2),
        "figures": len(list((page.parent / "figures").glob("*.png"))),
        "maxrss_after_imports_mib": round(base, 1),
        "maxrss_peak_mib": round(_maxrss_mib(), 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", type=int, default=1000)
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--dir", type=Path, default=None, help="keep the results here (default: a temp dir)")
    p.add_argument("--measure", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:  # the child: a fresh interpreter, so maxrss is the report's alone
        print(json.dumps(measure(args.measure)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp)
        start = time.perf_counter()
        run = synthesize(root, args.cells, args.samples)
        made = time.perf_counter() - start
        out = subprocess.run(
            [sys.executable, __file__, "--measure", str(run)], capture_output=True, text=True, check=True
        ).stdout
        figures = json.loads(out.strip().splitlines()[-1])
        shape = {"cells": args.cells, "samples": args.samples, "synthesize_s": round(made, 1)}
        print(pd.Series({**shape, **figures}).to_string())


if __name__ == "__main__":
    main()
