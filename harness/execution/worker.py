"""Run one planned cell in whichever process a backend chose (inline, pool worker, Ray worker).

A worker process loads the experiment's data and models once (:func:`_state`, cached per
experiment) and reuses them for every cell it is given. The cell's time limit is enforced
inside the worker with ``SIGALRM`` (the cell becomes a ``timeout`` row) and, should the
attack be stuck in native code, by the backend killing the worker (``timeout`` or
``crashed`` row). Library chatter (ART's tqdm bars, CleverHans prints, TF's C++ logs) goes to
the run's log directory, never to the user's terminal.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from advharness.core.interrupts import die_with_parent
from advharness.execution.plan import CellTask

log = logging.getLogger(__name__)

#: Extra seconds a stuck cell gets past its limit before its worker is killed.
KILL_GRACE_S = 20.0


class CellTimeout(BaseException):
    """Raised in the worker's main thread when a cell exceeds its time limit."""


@dataclass(frozen=True)
class RunContext:
    """What a worker needs besides the task: the validated experiment and where to log."""

    experiment_json: str
    log_dir: str


def init_worker(log_dir: str, threads: int = 1) -> None:
    """Worker start-up: one compute thread per worker, output to ``log_dir``."""
    for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(var, str(threads))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    die_with_parent()  # no worker outlives its run
    redirect_output(Path(log_dir) / f"worker-{os.getpid()}.log")
    from advharness.core.frameworks import framework_available

    if framework_available("torch"):  # an optional extra
        import torch

        torch.set_num_threads(threads)


def redirect_output(path: Path) -> None:
    """Send this process's stdout/stderr (file descriptors too) and logging to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    logging.basicConfig(
        level=logging.INFO,
        force=True,
        stream=sys.stderr,
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
    )


@contextmanager
def redirect_fds(path: Path) -> Iterator[None]:
    """Send file descriptors 1 and 2 to ``path`` for the block (inline runs: the libraries'
    C-level output too), then restore them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)


class _State:
    """One experiment's data and models, loaded in this process."""

    def __init__(self, experiment_json: str) -> None:
        from advharness.config.experiment import Experiment
        from advharness.zoo.build import build_models
        from advharness.zoo.data import load_dataset

        self.exp = Experiment.model_validate_json(experiment_json)
        d = self.exp.data
        self.ds = load_dataset(d.dataset, d.split, d.n_samples, d.offset, d.path)
        self.models = build_models(self.exp, self.ds)
        self._prepared: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._hashes: dict[str, str] = {}

    def matches(self, params: dict[str, str]) -> bool:
        """Whether the models named in ``params`` have those parameter hashes here (each
        checked on the batch first, as in the plan: a lazily built Keras model gets its
        weights on its first forward pass)."""
        for name, planned in params.items():
            if name not in self._hashes:
                self.prepared(name)
                self._hashes[name] = self.models[name].parameter_hash()
            if self._hashes[name] != planned:
                return False
        return True

    def prepared(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Model ``name``'s batch (the images on its bounds, in its layout) and clean logits."""
        from advharness.execution.api import prepare
        from advharness.zoo.data import to_bounds

        if name not in self._prepared:
            m = self.models[name]
            self._prepared[name] = prepare(m, to_bounds(self.ds.x, m.bounds), self.ds.y)
        return self._prepared[name]


@functools.lru_cache(maxsize=2)
def _state(experiment_json: str) -> _State:
    return _State(experiment_json)


def execute(
    task: CellTask, ctx: RunContext, time_limit_s: float | None = None, hard_kill: bool = True
) -> dict[str, Any]:
    """Run ``task``; returns ``{"summary": row, "records": DataFrame | None}``.

    ``hard_kill``: kill this process if the cell ignores its time limit (worker processes
    only; the inline backend runs cells in the user's process)."""
    from advharness.cells.dispatch import run_cell
    from advharness.config.spec import AttackSpec
    from advharness.core.interrupts import catch_user_interrupts
    from advharness.execution.api import cell_inputs

    state = _state(ctx.experiment_json)
    if not state.matches(task.params):  # models loaded in this process by an earlier run
        _state.cache_clear()
        state = _state(ctx.experiment_json)
        if not state.matches(task.params):
            return {
                "summary": fault_row(
                    task,
                    "error",
                    (
                        f"model {task.model!r} (or its source) built in this worker has other "
                        "parameters than the one planned: does its factory build the same model "
                        "every time (seeded, weights loaded)?"
                    ),
                ),
                "records": None,
            }
    spec = AttackSpec.model_validate(task.spec).resolve().for_cell()
    inputs = cell_inputs(state.models, state.prepared, task.model, spec, state.ds.y, task.run_seed)
    if task.samples is not None:  # a convergence check: the first samples of the batch
        inputs = inputs.take(slice(0, task.samples))
    try:
        with catch_user_interrupts(), _time_limit(time_limit_s, hard_kill):
            res = run_cell(inputs, spec, task.library, task.seed, state.exp.batch_size)
    except CellTimeout:
        return {
            "summary": fault_row(task, "timeout", f"cell exceeded its time limit of {time_limit_s:g} s"),
            "records": None,
        }
    return {
        "summary": {
            **task.row,
            **res.summary,
            "worker_pid": os.getpid(),
            "worker_rss_mb": rss_mb(),
            "finished_at": time.time(),
        },
        "records": res.records,
        "x_adv": res.x_adv if state.exp.save_adversarials else None,
        "x_seen": res.x_seen if state.exp.save_adversarials else None,
        "traces": res.traces if state.exp.save_traces else None,
    }


def rss_mb() -> float:
    """This process's resident memory now (MiB), from ``/proc`` (0 where unavailable)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def fault_row(task: CellTask, status: str, reason: str) -> dict[str, Any]:
    """The table row of a cell that produced no result (timeout, crashed worker...)."""
    return {**task.row, "status": status, "reason": reason[:500], "finished_at": time.time()}


@contextmanager
def _time_limit(seconds: float | None, hard_kill: bool) -> Iterator[None]:
    """``SIGALRM`` after ``seconds`` (main thread only); a hard kill ``KILL_GRACE_S`` later."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise CellTimeout()

    def kill() -> None:  # the attack ignored the alarm (stuck in native code)
        log.error("cell still running %.0f s past its limit: killing worker %d", KILL_GRACE_S, os.getpid())
        os.kill(os.getpid(), signal.SIGKILL)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    watchdog = threading.Timer(seconds + KILL_GRACE_S, kill)
    watchdog.daemon = True
    if hard_kill:
        watchdog.start()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        watchdog.cancel()
