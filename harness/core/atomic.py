"""Atomic, durable file writes: all or nothing, on disk once they return."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any


def atomic_write(path: Path, write: Any, suffix: str | None = None) -> None:
    """``write(tmp)``, fsync it, rename ``tmp`` to ``path`` (same directory) and fsync the
    directory: all or nothing, and durable once this returns.

    ``suffix``: the temporary file's ending (default ``path``'s; Keras wants ``.weights.h5``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # not mkstemp: its files are 0600; this one gets 0666 less the umask, as open() would
    tmp = path.parent / f".tmp-{secrets.token_hex(8)}{path.suffix if suffix is None else suffix}"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        write(Path(tmp))
        fsync_path(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def fsync_path(path: Path) -> None:
    """Flush a file's (or a directory's entries') data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
