"""Keep the libraries' native start-up chatter off the user's terminal.

TensorFlow's C++ side writes its banner (oneDNN, CUDA stubs, CPU features, ``failed call to
cuInit``) straight to file descriptor 2 when it is imported and when its devices are first
listed, before and regardless of Python's logging; ``TF_CPP_MIN_LOG_LEVEL`` silences only
part of it. :func:`import_tensorflow` imports TensorFlow and initialises its devices with
fd 2 captured: lines in the native log format go to this module's logger (DEBUG), anything
else is written back to the terminal. Nothing happens at import time of this module.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

#: A line of absl/glog-style native logging (``I0000 00:00:1796079073.626892  4856 port.cc:153] ...``)
#: or the preamble absl prints before its first one.
_NATIVE = re.compile(
    r"^([IWEF]\d{4} \d\d:\d\d:[\d.]+\s+\d+ [\w./-]+:\d+\] |"
    r"WARNING: All log messages before absl::InitializeLog\(\) is called)"
)
#: The second line of TensorFlow's CPU-feature notice, which has no prefix of its own.
_CONTINUED = re.compile(r"^To enable the following instructions: .* rebuild TensorFlow")


@contextmanager
def native_logs_to_log(what: str) -> Iterator[None]:
    """Capture file descriptor 2 for the block; native log lines go to the logger, the rest
    back to the terminal (no capture where fd 2 is not open)."""
    if sys.stderr is not None:
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            if sys.stderr is not None:
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode(errors="replace")
            other = []
            for line in text.splitlines():
                if _NATIVE.match(line) or _CONTINUED.match(line):
                    log.debug("%s: %s", what, line)
                else:
                    other.append(line)
            if other and sys.stderr is not None:
                sys.stderr.write("\n".join(other) + "\n")
                sys.stderr.flush()


def import_tensorflow() -> None:
    """Import TensorFlow (if not yet) and initialise its devices without the native banner.

    ``TF_CPP_MIN_LOG_LEVEL`` defaults to 3 (the user's own setting wins), which also keeps
    the native logs TensorFlow writes later quiet; its Python warnings still reach logging.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with native_logs_to_log("tensorflow"):
        import tensorflow as tf

        tf.config.list_physical_devices()


#: Ray's notice that it turned token authentication on by itself (``ray.init``).
RAY_TOKEN_NOTICE = "Token authentication is enabled for this Ray cluster"


@contextmanager
def ray_notices_to_log() -> Iterator[None]:
    """For the block, Ray's token-authentication notice goes to this module's logger (INFO,
    the run's log) instead of the terminal; every other Ray message is left as it is."""
    ray_log = logging.getLogger("ray._private.authentication.authentication_token_setup")

    def demote(record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(RAY_TOKEN_NOTICE):
            log.info("ray: %s", record.getMessage())
            return False
        return True

    ray_log.addFilter(demote)
    try:
        yield
    finally:
        ray_log.removeFilter(demote)


def quiet_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (if not yet running) with its "leaked
    semaphore objects to clean up at shutdown" warning off: it is printed by that separate
    process, on the user's terminal, when a run is interrupted, and the tracker cleans them
    up anyway. The process's environment is restored afterwards."""
    from multiprocessing import resource_tracker

    quiet = "ignore::UserWarning:multiprocessing.resource_tracker"
    before = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = f"{before},{quiet}" if before else quiet
    try:
        resource_tracker.ensure_running()
    finally:
        if before is None:
            del os.environ["PYTHONWARNINGS"]
        else:
            os.environ["PYTHONWARNINGS"] = before
