"""Processes and signals: telling the user's Ctrl-C apart from ``KeyboardInterrupt`` /
``SystemExit`` raised by library code inside an attack; child processes that die with their
parent; exit codes in words.

A real Ctrl-C must stop the run; the same exception raised by an attack (a library calling
``sys.exit()``, or raising ``KeyboardInterrupt`` itself) is that cell's ``error`` row. While
:func:`catch_user_interrupts` is active, ``SIGINT`` is recorded before it raises, so
:func:`from_user` knows where a ``KeyboardInterrupt`` came from. Pool workers ignore
``SIGINT`` (the main process stops them), so there any ``KeyboardInterrupt`` is the library's.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from advharness.core.errors import one_line


class _SigintRecorder:
    """A ``SIGINT`` handler that remembers it fired, then raises ``KeyboardInterrupt``."""

    def __init__(self) -> None:
        self.received = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.received = True
        raise KeyboardInterrupt


@contextmanager
def catch_user_interrupts() -> Iterator[None]:
    """Record real ``SIGINT`` for the block (main thread, default Python handler only; a
    handler of the caller's own is left alone)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    previous = signal.signal(signal.SIGINT, _SigintRecorder())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def from_user(e: BaseException) -> bool:
    """Whether ``e`` may be the user's interrupt (and must stop the run) rather than raised
    by library code. ``SystemExit`` is always the library's (the harness never calls
    ``sys.exit`` inside a cell); a ``KeyboardInterrupt`` is the user's unless ``SIGINT`` is
    ignored in this process or recorded and not received."""
    if not isinstance(e, KeyboardInterrupt):
        return False
    handler = signal.getsignal(signal.SIGINT)
    if handler is signal.SIG_IGN:
        return False
    if isinstance(handler, _SigintRecorder):
        return handler.received
    return True


def describe(e: BaseException) -> str:
    """One line for an exception that ended an attack, e.g. ``SystemExit(4) raised inside
    the attack``."""
    if isinstance(e, SystemExit):
        return f"SystemExit({e.code!r}) (sys.exit called inside the attack)"
    return f"{one_line(e, 500)} raised inside the attack (not a Ctrl-C)"


class RunInterrupted(KeyboardInterrupt):
    """The user stopped a batch run (Ctrl-C); every finished cell is stored."""

    def __init__(self, stored: int, total: int, run_now: int, run_dir: str) -> None:
        super().__init__(
            f"interrupted: {stored} of {total} cells stored in {run_dir} ({run_now} finished in this run)"
        )
        self.stored, self.total, self.run_now, self.run_dir = stored, total, run_now, run_dir


def exit_description(code: int | None) -> str:
    """``exit code 3``, or ``exit code -9, killed by SIGKILL`` for a process a signal ended."""
    text = f"exit code {code}"
    if code is not None and code < 0:
        try:
            text += f", killed by {signal.Signals(-code).name}"
        except ValueError:
            pass
    return text


def die_with_parent(poll_s: float = 1.0) -> None:
    """End this (child) process as soon as the process that started it is gone (SIGKILL,
    the OOM killer), so nothing goes on computing for a run that no longer exists: Linux
    kills it with the parent (``PR_SET_PDEATHSIG``); elsewhere, and should the parent have
    died already, a thread notices the parent change within ``poll_s``."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    ppid = parent.pid if parent is not None and parent.pid else os.getppid()
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)

    def watch() -> None:
        while os.getppid() == ppid:
            threading.Event().wait(poll_s)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="advh-parent-watch", daemon=True).start()
