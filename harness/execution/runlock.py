"""One run at a time per results directory.

A run holds an exclusive ``flock`` on ``<run>/.lock`` from before its first cell until its
tables are written; the file says who holds it (pid, host, start time, command). A second
run of the same directory is refused at once with a one-line error naming the holder,
rather than computing every cell a second time or waiting silently for hours: the first
run stores each cell as it finishes, so running the same command after it ends (or after
it is stopped) picks up exactly what is left. The lock goes with its process (a killed run
leaves no stale lock); the file itself stays.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from advharness.core.errors import HarnessError


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the block, or raise :class:`HarnessError` naming its
    holder."""
    import fcntl

    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text().strip() or "a run that is starting"
            raise HarnessError(
                f"{run_dir} is in use by another run ({holder}); it stores every cell as it "
                "finishes: run this again when it has ended to pick up what is left, or "
                "choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        os.write(
            fd,
            (
                f"pid {os.getpid()} on {socket.gethostname()}, started {started}: "
                f"{' '.join(sys.argv)[:200]}\n"
            ).encode(),
        )
        yield
    finally:
        os.close(fd)  # releases the lock
