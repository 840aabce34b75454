"""Where cells run: inline (debugging), a local process pool (default), or a Ray cluster.

Every backend takes planned cells and yields ``(task, outcome)`` as each finishes, in
completion order; the runner stores each outcome at once, and closes the generator when it
stops early (Ctrl-C, a full disk): the backend then drops the cells not finished. An
outcome is what :func:`advharness.execution.worker.execute` returned, or a fault row built here:
``timeout`` (the worker was killed past the cell's time limit), ``crashed`` (the worker
process died: segfault, OOM, ``os._exit``; the row gives the exit code or signal) or
``error`` (an exception outside the attack, e.g. loading a model). Nothing is retried
silently; a fault in one cell never stops the others.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, Protocol

from advharness.core.errors import one_line
from advharness.core.interrupts import describe, exit_description
from advharness.execution.plan import CellTask
from advharness.execution.worker import KILL_GRACE_S, RunContext, execute, fault_row

log = logging.getLogger(__name__)
Outcome = dict[str, Any]


class Backend(Protocol):
    name: str

    def run(
        self, tasks: list[CellTask], ctx: RunContext, time_limit_s: float | None
    ) -> Generator[tuple[CellTask, Outcome], None, None]: ...


def _error(task: CellTask, e: BaseException) -> Outcome:
    if isinstance(e, (SystemExit, KeyboardInterrupt)):  # raised in a worker, outside the attack
        msg = describe(e).replace("inside the attack", "in the worker")
    else:
        msg = one_line(e, 500)
    return {"summary": fault_row(task, "error", msg), "records": None}


class InlineBackend:
    """Cells one after another in this process (time limit by ``SIGALRM`` only)."""

    name = "inline"

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        pass

    def run(
        self, tasks: list[CellTask], ctx: RunContext, time_limit_s: float | None
    ) -> Generator[tuple[CellTask, Outcome], None, None]:
        from advharness.execution.worker import redirect_fds

        for task in tasks:
            try:
                with redirect_fds(Path(ctx.log_dir) / "inline.log"):
                    out = execute(task, ctx, time_limit_s, hard_kill=False)
            except (Exception, SystemExit) as e:  # outside the attack (run_cell: inside it)
                log.exception("cell %d failed outside the attack", task.index)
                out = _error(task, e)
            yield task, out


class PoolBackend:
    """A local process pool (``pebble``): ``workers`` spawned processes that each load the
    models once; a worker that hangs past the limit is killed and replaced, one that dies is
    replaced, and the cell gets a ``timeout`` / ``crashed`` row."""

    name = "pool"

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1

    def run(
        self, tasks: list[CellTask], ctx: RunContext, time_limit_s: float | None
    ) -> Generator[tuple[CellTask, Outcome], None, None]:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, wait

        from pebble import ProcessPool

        from advharness.execution.worker import init_worker

        hard = None if time_limit_s is None else time_limit_s + KILL_GRACE_S
        from advharness.core.quiet import quiet_resource_tracker

        quiet_resource_tracker()
        pool = ProcessPool(
            max_workers=self.workers,
            context=multiprocessing.get_context("spawn"),
            initializer=init_worker,
            initargs=(ctx.log_dir,),
        )
        try:
            futures: dict[Any, CellTask] = {
                pool.schedule(execute, args=(t, ctx, time_limit_s), timeout=hard): t for t in tasks
            }
            pending: set[Any] = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    yield futures[fut], _pool_outcome(fut, futures[fut], time_limit_s)
        except BaseException:  # Ctrl-C, or the caller stopped: drop every cell not finished
            pool.stop()  # workers are terminated now, not after the remaining cells
            raise
        else:
            pool.close()
        finally:
            pool.join()


def _pool_outcome(fut: Any, task: CellTask, time_limit_s: float | None) -> Outcome:
    """A finished pool future as an outcome (its exception, if any, as a fault row)."""
    from pebble import ProcessExpired

    e = fut.exception()  # not .result(): a worker's SystemExit must not end this process
    if e is None:
        out: Outcome = fut.result()
        return out
    if isinstance(e, TimeoutError):
        status, reason = (
            "timeout",
            (
                f"worker killed: cell still running {KILL_GRACE_S:g} s "
                f"past its time limit of {time_limit_s:g} s"
            ),
        )
    elif isinstance(e, ProcessExpired):
        status, reason = (
            "crashed",
            (f"worker process died ({exit_description(e.exitcode)}) while running this cell"),
        )
    else:
        return _error(task, e)
    log.info("cell %d (%s, key %s): %s", task.index, task.spec.get("attack"), task.key, reason)
    return {"summary": fault_row(task, status, reason), "records": None}


class RayBackend:
    """Ray tasks: a local Ray runtime, or an existing cluster with ``address``. Each cell is
    one task (``max_retries=0``: nothing is retried silently), run in the Ray worker's own
    one-process pool (see :func:`_ray_execute`); Ray reuses worker processes, so each loads
    the models once. A dead worker becomes a ``crashed`` row with its exit code or signal."""

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        from advharness.core.frameworks import require_framework

        require_framework("ray", "the Ray backend")  # an optional extra
        self.workers, self.address = workers, address

    def run(
        self, tasks: list[CellTask], ctx: RunContext, time_limit_s: float | None
    ) -> Generator[tuple[CellTask, Outcome], None, None]:
        if _is_loopback(self.address):
            _keep_loopback(local_runtime=not self.address)
        import ray

        started_here = not ray.is_initialized()
        if started_here:
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "configure_logging": False,
            }
            if self.address:
                kwargs["address"] = self.address
            else:
                kwargs["num_cpus"] = self.workers or os.cpu_count() or 1
            from advharness.core.quiet import ray_notices_to_log

            with ray_notices_to_log():
                ray.init(**kwargs)
        pending: list[Any] = []
        try:
            remote = ray.remote(num_cpus=1, max_retries=0)(_ray_execute)
            refs = {remote.remote(t, ctx, time_limit_s): t for t in tasks}
            pending = list(refs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                task = refs[done[0]]
                try:
                    out = ray.get(done[0])
                except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as e:
                    out = {
                        "summary": fault_row(
                            task, "crashed", (f"Ray worker died while running this cell ({type(e).__name__})")
                        ),
                        "records": None,
                    }
                except ray.exceptions.RayTaskError as e:
                    out = _error(task, e.cause if e.cause is not None else e)
                yield task, out
        except BaseException:  # Ctrl-C, or the caller stopped: cancel every cell not finished
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            if started_here:
                ray.shutdown()


def _is_loopback(address: str | None) -> bool:
    """No address (a local runtime) or a 127.x / localhost address."""
    host = (address or "127.0.0.1").rsplit(":", 1)[0]
    return host == "localhost" or host.startswith("127.")


def _keep_loopback(local_runtime: bool) -> None:
    """Keep Ray on 127.0.0.1. With multi-node clusters enabled (Linux), Ray rewrites a loopback
    address to the machine's network address (``resolve_ip_for_localhost``), so a local
    runtime, or a driver joining a cluster on 127.0.0.1, would talk over the network
    interface. The driver's address resolution is pinned to loopback, and a local runtime's
    processes run in Ray's single-machine mode."""
    import ray._private.services as services

    services.resolve_ip_for_localhost = lambda host: host
    services.get_node_ip_address = lambda address=None: "127.0.0.1"
    if local_runtime:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # its processes inherit it


def _ray_execute(task: CellTask, ctx: RunContext, time_limit_s: float | None) -> Outcome:
    """Ray worker entry point: the cell runs in this Ray worker's own one-process pool
    (started on its first cell; its process loads the models once), so a cell that kills
    its process is a ``crashed`` row with the exit code or signal and a stuck one a
    ``timeout`` row, exactly as on the pool backend (Ray itself only reports that a worker
    died)."""
    from concurrent.futures import wait

    hard = None if time_limit_s is None else time_limit_s + KILL_GRACE_S
    fut = _cell_pool(ctx.log_dir).schedule(execute, args=(task, ctx, time_limit_s), timeout=hard)
    wait([fut])
    return _pool_outcome(fut, task, time_limit_s)


@functools.lru_cache(maxsize=1)
def _cell_pool(log_dir: str) -> Any:
    """This Ray worker's one-process pool (kept for the worker's life)."""
    import multiprocessing

    from pebble import ProcessPool

    from advharness.execution.worker import init_worker

    return ProcessPool(
        max_workers=1,
        context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(log_dir,),
    )


BACKENDS: dict[str, Callable[..., Backend]] = {
    "inline": InlineBackend,
    "pool": PoolBackend,
    "ray": RayBackend,
}
