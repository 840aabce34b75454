"""Run an experiment file: plan its cells, run the unfinished ones on a backend, store each
as it finishes, assemble the tables.

``results/<name>/cells/`` holds one file pair per finished cell (see :mod:`harness.store`);
``summary.parquet``/``.csv``, ``records.parquet`` and ``manifest.json`` are assembled from
them at the end, each written atomically. Re-running the same experiment skips finished
cells (``retry_failed`` re-runs error/timeout/crashed ones), so a run killed at any moment
and started again ends with the same table as an uninterrupted one (timings aside).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.data import Dataset
from harness.errors import HarnessError
from harness.experiment import Experiment, ModelConfig
from harness.models import WrappedModel
from harness.plan import CellTask, plan_cells
from harness.referee import flag_gradient_masking
from harness.runner import RunResult
from harness.seeding import derive_seed
from harness.store import FAILED, CellStore

log = logging.getLogger(__name__)


def build_models(exp: Experiment, ds: Dataset) -> dict[str, WrappedModel]:
    """The experiment's models by key: recipes (trained once, cached), factories, substitutes."""
    from harness.recipes import load_recipe

    models: dict[str, WrappedModel] = {}
    for mc in exp.models:
        if mc.substitute_of is not None:
            m = _substitute(exp, mc, models[mc.substitute_of], ds.x)
        elif mc.factory is not None:
            from harness.factory import load_factory_model

            m = load_factory_model(mc)
        else:
            assert mc.recipe is not None  # validated: exactly one of recipe / factory
            m = load_recipe(mc.recipe, mc.framework, data_path=exp.data.path)
            m.name, m.family = mc.key, mc.recipe
        models[mc.key] = m
    return models


def _substitute(exp: Experiment, mc: ModelConfig, target: WrappedModel,
                eval_x: np.ndarray) -> WrappedModel:
    """Train ``mc`` from ``target``'s answers on the attacker's pool: the dataset split the
    experiment does not evaluate on (so pool and evaluation images never overlap)."""
    from harness.data import load_dataset
    from harness.substitute import train_substitute

    d = exp.data
    pool = load_dataset(d.dataset, "train" if d.split == "test" else "test", path=d.path)
    assert mc.queries is not None and mc.recipe is not None  # validated
    m = train_substitute(target, pool.x, recipe=mc.recipe, framework=mc.framework,
                         queries=mc.queries, labels_only=mc.labels_only, epochs=mc.epochs,
                         seed=derive_seed(exp.seed, "substitute", mc.key), eval_x=eval_x)
    m.name = mc.key
    info = m.substitute_info  # type: ignore[attr-defined]
    info["pool"] = f"{pool.name} {pool.split} ({len(pool.x)} images; {pool.source})"
    return m


def run_experiment(
    exp: Experiment, results_root: str | Path | None = "results", *, progress: bool = False,
    out_dir: str | Path | None = None, backend: str = "pool", workers: int | None = None,
    ray_address: str | None = None, retry_failed: bool = False, command: str | None = None,
    overrides: Sequence[str] | None = None,
) -> RunResult:
    """Run every unfinished cell of ``exp`` on ``backend``; return and write the tables.

    Data, models and specs are validated (and recipes trained) before any attack runs.
    ``results_root=None`` and ``out_dir=None``: a scratch directory, removed afterwards.
    ``command``, ``overrides``: the command line that started the run and the overrides the
    experiment was loaded with (the CLI passes both), for the manifest.
    """
    start = time.perf_counter()
    from harness.backends import BACKENDS
    from harness.data import load_dataset
    from harness.results import build_manifest, write_results
    from harness.worker import RunContext

    if backend not in BACKENDS:
        raise HarnessError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    d = exp.data
    ds = load_dataset(d.dataset, d.split, d.n_samples, d.offset, d.path)
    models = build_models(exp, ds)  # trains missing recipes once, before any worker starts
    _check_batch(exp, ds, models)
    tasks = plan_cells(exp, ds)
    with _run_dir(exp, results_root, out_dir) as run_dir, _log_file(run_dir / "logs" / "run.log"):
        store = CellStore(run_dir)
        todo = [t for t in tasks if _to_run(exp, store, t.key, retry_failed)]
        log.info("%s: %d cells, %d to run on %s", exp.name, len(tasks), len(todo), backend)
        ctx = RunContext(exp.model_dump_json(), str(run_dir / "logs"))
        limit = getattr(exp, "time_limit_s", None)
        runner = BACKENDS[backend](workers or getattr(exp, "workers", None), ray_address)
        with _progress(len(tasks), len(tasks) - len(todo), progress) as advance:
            for task, out in runner.run(todo, ctx, limit):
                store.write(task.key, out["summary"], out["records"], out.get("x_adv"))
                advance(out["summary"]["status"])
        result = collect(tasks, store)
        result.manifest = {**build_manifest(exp, ds, list(models.values())),
                           "backend": backend, "cells": len(tasks),
                           "cells_run_now": len(todo), "command": command,
                           "overrides": None if overrides is None else list(overrides),
                           "wall_time_s": round(time.perf_counter() - start, 3)}
        if results_root is not None or out_dir is not None:
            result.path = write_results(result, run_dir)
    return result


def plan_table(exp: Experiment, results_root: str | Path | None = "results",
               out_dir: str | Path | None = None, retry_failed: bool = False) -> pd.DataFrame:
    """The cells of ``exp`` and their state in its results directory (no model is loaded
    or trained, nothing runs)."""
    from harness.data import load_dataset

    d = exp.data
    ds = load_dataset(d.dataset, d.split, d.n_samples, d.offset, d.path)
    run_dir = Path(out_dir) if out_dir is not None else Path(results_root or ".") / exp.name
    store = CellStore(run_dir)
    rows = []
    for t in plan_cells(exp, ds):
        status = store.status(t.key)
        spec = t.spec
        rows.append({"cell": t.index, "key": t.key, "run_seed": t.run_seed, "model": t.model,
                     "attack": spec["attack"], "eps": spec.get("eps"),
                     "threat_model": t.row["threat_model"], "library": t.library,
                     "stored": status or "-",
                     "will_run": _to_run(exp, store, t.key, retry_failed)})
    return pd.DataFrame(rows)


def _to_run(exp: Experiment, store: CellStore, key: str, retry_failed: bool) -> bool:
    """Whether a cell runs: not stored (or failed, with ``retry_failed``), or stored without
    the adversarials ``save_adversarials`` asks for."""
    return not store.done(key, retry_failed) or (
        exp.save_adversarials and store.status(key) == "ok"
        and not store.adversarials_path(key).is_file())


@contextmanager
def _log_file(path: Path) -> Iterator[None]:
    """Also log (INFO and up) to ``path`` for the block: the run's own log."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


def _check_batch(exp: Experiment, ds: Dataset, models: dict[str, WrappedModel]) -> None:
    from harness.runner import prepare

    for m in models.values():
        prepare(m, ds.x, ds.y)  # shapes, bounds, labels, logits: one-line errors now


@contextmanager
def _run_dir(exp: Experiment, root: str | Path | None, out: str | Path | None
             ) -> Iterator[Path]:
    if out is not None or root is not None:
        yield Path(out) if out is not None else Path(root or ".") / exp.name
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix=f"advh-{exp.name}-") as tmp:
        yield Path(tmp)


def collect(tasks: list[CellTask], store: CellStore) -> RunResult:
    """The run's tables from the stored cells, in plan order."""
    rows, recs = [], []
    keys = ("cell", "library", "framework", "model", "attack", "norm", "eps", "targeted")
    for t in tasks:
        summary, records = store.read(t.key)
        row = {"cell": t.index, **summary, "cell_key": t.key,
               "spec": json.dumps(t.spec, sort_keys=True, default=str)}
        rows.append(row)
        if records is not None:
            r = records.assign(**{k: row[k] for k in keys}, run_seed=t.run_seed)
            recs.append(r[[*keys, "run_seed", *records.columns]])
    summary_df = pd.DataFrame(rows)
    summary_df["beats_white_box"] = flag_gradient_masking(summary_df)
    records_df = pd.concat(recs, ignore_index=True) if recs else pd.DataFrame()
    return RunResult(summary=summary_df, records=records_df)


@contextmanager
def _progress(total: int, already: int, show: bool) -> Iterator[Any]:
    """``advance(status)`` per finished cell; a rich bar with done/failed/remaining and ETA."""
    counts = {"done": already, "failed": 0}

    def count(status: str) -> None:
        counts["done"] += 1
        counts["failed"] += status in FAILED

    if not show:
        yield count
        return
    import os
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    try:  # a private copy of the terminal: inline runs point fd 1/2 at the log file
        console = Console(file=os.fdopen(os.dup(sys.stderr.fileno()), "w"), stderr=True)
    except (OSError, ValueError):
        console = Console(stderr=True)
    bar = Progress(TextColumn("cells"), BarColumn(), TextColumn(
        "{task.completed}/{task.total} done, {task.fields[failed]} failed, "
        "{task.fields[left]} remaining"), TimeRemainingColumn(), console=console,
        transient=True)
    with bar:
        job = bar.add_task("cells", total=total, completed=already, failed=0,
                           left=total - already)
        start = time.perf_counter()

        def advance(status: str) -> None:
            count(status)
            bar.update(job, completed=counts["done"], failed=counts["failed"],
                       left=total - counts["done"])

        yield advance
        log.info("cells finished in %.1f s", time.perf_counter() - start)
