"""Run an experiment file: plan its cells, run the unfinished ones on a backend, store each
as it finishes, assemble the tables.

``results/<name>/cells/`` holds one file pair per finished cell (see :mod:`advharness.reporting.store`);
``summary.parquet``/``.csv``, ``records.parquet`` and ``manifest.json`` are assembled from
them at the end, each written atomically. Re-running the same experiment skips finished
cells (``retry_failed`` re-runs error/timeout/crashed ones), so a run killed at any moment
and started again ends with the same table as an uninterrupted one (timings aside).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from advharness.config.experiment import Experiment
from advharness.core.errors import HarnessError
from advharness.core.frameworks import OPTIONAL_FRAMEWORKS, missing_framework_reason
from advharness.core.interrupts import RunInterrupted
from advharness.execution.plan import CellTask, plan_cells
from advharness.execution.probing import probe_models
from advharness.execution.runlock import run_lock
from advharness.models.base import WrappedModel
from advharness.reporting.run_result import RunResult
from advharness.reporting.store import FAILED, CellStore
from advharness.zoo.build import build_models, check_factories, missing_framework
from advharness.zoo.data import Dataset

log = logging.getLogger(__name__)


def run_experiment(
    exp: Experiment,
    results_root: str | Path | None = "results",
    *,
    progress: bool = False,
    out_dir: str | Path | None = None,
    backend: str = "pool",
    workers: int | None = None,
    ray_address: str | None = None,
    retry_failed: bool = False,
    command: str | None = None,
    overrides: Sequence[str] | None = None,
) -> RunResult:
    """Run every unfinished cell of ``exp`` on ``backend``; return and write the tables.

    Data, models and specs are validated (and recipes trained) before any attack runs.
    ``results_root=None`` and ``out_dir=None``: a scratch directory, removed afterwards.
    ``command``, ``overrides``: the command line that started the run and the overrides the
    experiment was loaded with (the CLI passes both), for the manifest.
    """
    start = time.perf_counter()
    from advharness.execution.backends import BACKENDS
    from advharness.execution.worker import RunContext, fault_row
    from advharness.reporting.compare import expectations_table, write_expectations
    from advharness.reporting.results import build_manifest, collect_store, write_results
    from advharness.zoo.data import load_dataset

    if backend not in BACKENDS:
        raise HarnessError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    # before any model is built: a backend whose framework is not installed says so
    runner = BACKENDS[backend](workers or getattr(exp, "workers", None), ray_address)
    if results_root is not None or out_dir is not None:  # before any model is built
        check_run_dir(_target(exp, results_root, out_dir), probe=True)
    d = exp.data
    ds = load_dataset(d.dataset, d.split, d.n_samples, d.offset, d.path)
    _check_sizes(exp, ds)
    check_factories(exp)
    models = build_models(exp, ds)  # trains missing recipes once, before any worker starts
    checked = checked_parameters(exp, ds, models)
    tasks = plan_cells(exp, ds, checked)
    with (
        _run_dir(exp, results_root, out_dir) as run_dir,
        run_lock(run_dir),
        _log_file(run_dir / "logs" / "run.log"),
    ):
        store = CellStore(run_dir)
        probe_models(models, _model_batch(ds), ds.y, ds.fingerprint(), exp.batch_size, store, checked)
        # specs that differ only in a minimum-norm radius share a cell: run it once
        todo = list({t.key: t for t in reversed(tasks) if _to_run(exp, store, t.key, retry_failed)}.values())[
            ::-1
        ]
        log.info("%s: %d cells, %d to run on %s", exp.name, len(tasks), len(todo), backend)
        record_plan(tasks, store, exp.clean_accuracy_floor)
        ctx = RunContext(exp.model_dump_json(), str(run_dir / "logs"))
        limit = getattr(exp, "time_limit_s", None)
        missing = missing_frameworks(exp, todo)  # their rows are written here, not run
        run_now = 0
        try:
            with (
                _progress(len(tasks), len(tasks) - len(todo), progress) as advance,
                closing(runner.run([t for t in todo if t.key not in missing], ctx, limit)) as outcomes,
            ):  # stopped on any exit
                unsupported = (
                    (t, {"summary": fault_row(t, "unsupported", missing[t.key]), "records": None})
                    for t in todo
                    if t.key in missing
                )
                for task, out in chain(unsupported, outcomes):
                    try:
                        store.write(
                            task.key,
                            out["summary"],
                            out["records"],
                            out.get("x_adv"),
                            out.get("traces"),
                            out.get("x_seen"),
                        )
                    except OSError as e:  # e.g. the disk filled up: what is stored stays usable
                        stored = sum(store.done(t.key) for t in tasks)
                        raise HarnessError(
                            f"{run_dir}: cannot store cell {task.index} ({e.strerror or e}); "
                            f"{stored} of {len(tasks)} cells are stored; make room and run "
                            "again to resume"
                        ) from None
                    run_now += 1
                    advance(out["summary"]["status"])
        except KeyboardInterrupt as e:  # the backend has stopped its workers already
            stored = sum(store.status(t.key) is not None for t in tasks)
            stop = RunInterrupted(stored, len(tasks), run_now, str(run_dir))
            log.info("%s", stop)  # the run log; the CLI prints it with the resume command
            raise stop from e
        result = collect_store(store)
        result.manifest = {
            **build_manifest(exp, ds, list(models.values())),
            "backend": backend,
            "cells": len(tasks),
            "cells_run_now": len(todo),
            "command": command,
            "overrides": None if overrides is None else list(overrides),
            "wall_time_s": round(time.perf_counter() - start, 3),
            "cells_stored": int(result.summary["cell_key"].nunique()),
            "cells_superseded": result.superseded,
            "frameworks_missing": {
                name: reason for name in OPTIONAL_FRAMEWORKS if (reason := missing_framework_reason(name))
            },
        }
        if results_root is not None or out_dir is not None:
            try:
                result.path = write_results(result, run_dir)
                if exp.expect:  # published vs measured, next to the tables
                    write_expectations(expectations_table(result, exp.expect), run_dir)
            except OSError as e:
                raise HarnessError(
                    f"{run_dir}: cannot write the result tables ({e.strerror or e})"
                    f"; all {len(tasks)} cells are stored: make room and run "
                    "again to write them"
                ) from None
    return result


def plan_table(
    exp: Experiment,
    results_root: str | Path | None = "results",
    out_dir: str | Path | None = None,
    retry_failed: bool = False,
) -> pd.DataFrame:
    """The cells of ``exp`` and their state in its results directory; nothing is trained and
    nothing runs. Keys cover each model's parameters, so the models that need no training
    (factories, cached recipes) are built and checked on the batch; cells of the others
    (recipes to train, substitutes) show key ``?`` and count as to run."""
    from advharness.zoo.data import load_dataset

    d = exp.data
    ds = load_dataset(d.dataset, d.split, d.n_samples, d.offset, d.path)
    _check_sizes(exp, ds)
    built = build_models(exp, ds, train=False)
    tasks = plan_cells(exp, ds, checked_parameters(exp, ds, built))
    run_dir = _target(exp, results_root or ".", out_dir)
    check_run_dir(run_dir, probe=False)
    store = CellStore(run_dir)
    # models whose framework is missing are never built: their keys are known as planned
    ready = set(built) | {mc.key for mc in exp.model_entries() if missing_framework(exp, mc.key) is not None}
    rows = []
    for t in tasks:
        known = t.model in ready and t.row.get("source_model", t.model) in ready
        status = store.status(t.key) if known else None
        spec = t.spec
        rows.append(
            {
                "cell": t.index,
                "key": t.key if known else "?",
                "run_seed": t.run_seed,
                "model": t.model,
                "attack": spec["attack"],
                "eps": spec.get("eps"),
                "check": t.row.get("check", ""),
                "threat_model": t.row["threat_model"],
                "library": t.library,
                "stored": status or ("-" if known else "?"),
                "will_run": not known or _to_run(exp, store, t.key, retry_failed),
            }
        )
    table = pd.DataFrame(rows)
    return table if exp.checks else table.drop(columns="check", errors="ignore")


def missing_frameworks(exp: Experiment, tasks: list[CellTask]) -> dict[str, str]:
    """The reason, by cell key, of each of ``tasks`` whose model (or transfer source) needs a
    framework that is not installed: one line naming the extra to install. Logged as a
    warning once per model that cannot be built."""
    reasons = {mc.key: missing_framework(exp, mc.key) for mc in exp.model_entries()}
    out: dict[str, str] = {}
    cells: dict[str, int] = {}  # by the model that cannot be built
    for t in tasks:
        for key in (t.model, t.row.get("source_model") or t.model):
            reason = reasons[key]
            if reason is not None:
                out[t.key] = reason
                cells[key] = cells.get(key, 0) + 1
                break
    for key, n in cells.items():
        log.warning("model %s: %s (%d cells are unsupported rows)", key, reasons[key], n)
    return out


def _to_run(exp: Experiment, store: CellStore, key: str, retry_failed: bool) -> bool:
    """Whether a cell runs: not stored (or failed, with ``retry_failed``), or stored without
    the adversarials ``save_adversarials`` asks for, or (a white-box cell) without the
    traces ``save_traces`` asks for."""
    if not store.done(key, retry_failed):
        return True
    if not (exp.save_adversarials or exp.save_traces) or store.status(key) != "ok":
        return False
    if exp.save_adversarials and not store.adversarials_path(key).is_file():
        return True
    return (
        exp.save_traces
        and not store.traces_path(key).is_file()
        and store.read(key)[0].get("threat_model") == "white-box"
    )


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


def _check_sizes(exp: Experiment, ds: Dataset) -> None:
    """Attack parameters that count input elements, against the images actually loaded."""
    from advharness.execution.api import check_sizes

    specs = [a.resolve() for a in exp.attack_entries()]
    check_sizes(specs, ds.input_shape, f"{ds.name} {ds.split}", [f"attack {s.label!r}" for s in specs])


def checked_parameters(exp: Experiment, ds: Dataset, models: dict[str, WrappedModel]) -> dict[str, str]:
    """Each model's parameter hash (for the cells' keys), once the model has passed the
    batch's checks on the data scaled to its bounds (shapes, bounds, labels, finite logits:
    one-line errors now; a Keras model built lazily has its weights only after this first
    forward pass). A model below ``clean_accuracy_floor`` on the batch is logged (its cells
    are flagged ``low_clean_accuracy``)."""
    from advharness.execution.api import prepare
    from advharness.zoo.data import to_bounds

    floor = exp.clean_accuracy_floor
    for m in models.values():
        _, logits = prepare(m, to_bounds(ds.x, m.bounds), ds.y)
        correct = int((logits.argmax(axis=1) == ds.y).sum())
        if correct < floor * len(ds.y):
            log.warning(
                "model %s classifies %d of %d inputs correctly (clean accuracy %.2f, "
                "below clean_accuracy_floor %g): its cells are flagged "
                "low_clean_accuracy; check its bounds and data.scale, its layout and "
                "its weights",
                m.name,
                correct,
                len(ds.y),
                correct / len(ds.y),
                floor,
            )
    return {key: m.parameter_hash() for key, m in models.items()}


def _model_batch(ds: Dataset) -> Callable[[str, WrappedModel], np.ndarray]:
    """``batch(name, model)``: the run's data on ``model``'s bounds, in its layout, checked."""
    from advharness.execution.api import prepare
    from advharness.zoo.data import to_bounds

    return lambda name, m: prepare(m, to_bounds(ds.x, m.bounds), ds.y)[0]


def _target(exp: Experiment, root: str | Path | None, out: str | Path | None) -> Path:
    """The run's directory: ``out``, else ``<root>/<name>``."""
    return Path(out) if out is not None else Path(root or ".") / exp.name


#: Bytes written (and removed) to check that a results directory can take files.
PROBE_BYTES = 1 << 20


def check_run_dir(run_dir: Path, probe: bool) -> None:
    """One-line errors now, not after the models are built, for a results directory that
    cannot hold the run: a file in its place (``--out`` naming a file) or above it, a name
    too long, and (``probe``) no permission, a read-only or a full disk. The probe writes
    :data:`PROBE_BYTES` to a temporary file in the nearest existing directory on the way,
    syncs and removes it: nothing is left behind."""
    import tempfile

    try:
        existing = run_dir
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            where = "" if existing == run_dir else f" ({existing} is a file)"
            raise HarnessError(f"results directory {run_dir} is not a directory{where}")
        if not probe:
            return
        with tempfile.TemporaryFile(dir=existing, prefix=".advh-probe-") as f:
            f.write(bytes(PROBE_BYTES))
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise HarnessError(f"results directory {run_dir} is not writable ({e.strerror or e})") from None


@contextmanager
def _run_dir(exp: Experiment, root: str | Path | None, out: str | Path | None) -> Iterator[Path]:
    if out is not None or root is not None:
        yield _target(exp, root, out)
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix=f"advh-{exp.name}-") as tmp:
        yield Path(tmp)


def record_plan(tasks: list[CellTask], store: CellStore, clean_accuracy_floor: float) -> None:
    """Record what this run asks for, once (``plans/``; the cell files stay as computed):
    each cell's place in the table, its reporting radius (minimum-norm cells: every radius
    any run asked for is reported, see :func:`advharness.reporting.results.collect_store`), the time
    (this run's cells win over superseded ones) and the experiment's clean-accuracy floor."""
    cells = [
        {
            "key": t.key,
            "index": t.index,
            "report_eps": t.report_eps if t.row.get("kind") == "minimal" else None,
        }
        for t in tasks
    ]
    store.write_plan(
        {"planned_at": time.time(), "clean_accuracy_floor": clean_accuracy_floor, "cells": cells}
    )


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
    bar = Progress(
        TextColumn("cells"),
        BarColumn(),
        TextColumn(
            "{task.completed}/{task.total} done, {task.fields[failed]} failed, {task.fields[left]} remaining"
        ),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    with bar:
        job = bar.add_task("cells", total=total, completed=already, failed=0, left=total - already)
        start = time.perf_counter()

        def advance(status: str) -> None:
            count(status)
            bar.update(job, completed=counts["done"], failed=counts["failed"], left=total - counts["done"])

        yield advance
        log.info("cells finished in %.1f s", time.perf_counter() - start)
