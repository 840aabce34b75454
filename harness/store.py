"""The cell store: one file pair per finished cell, written atomically as soon as it finishes.

``<run>/cells/<key>.json`` holds the cell's summary row, ``<key>.parquet`` its per-sample
records (absent for cells without records), ``<key>.adv.npz`` its adversarial examples
(``x_adv``, in the attacked model's layout; only with ``save_adversarials``). The records
and adversarials are written first and the JSON last, each through a temporary file and
``os.replace``, so a cell counts as finished exactly when its JSON exists, and a run killed
at any moment (SIGKILL included) leaves only whole cells behind. ``key`` is the cell's
content hash (see :mod:`harness.plan`), so re-running an
experiment finds what is already done.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: Statuses that ``--retry-failed`` runs again (``unsupported`` and ``violation`` are results).
FAILED = frozenset({"error", "timeout", "crashed"})


class CellStore:
    """Finished cells of one run directory."""

    def __init__(self, run_dir: str | Path) -> None:
        self.dir = Path(run_dir) / "cells"

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.dir / f"{key}.json", self.dir / f"{key}.parquet"

    def status(self, key: str) -> str | None:
        """The stored cell's status, or None if it has not finished."""
        summary, _ = self._paths(key)
        if not summary.is_file():
            return None
        return str(json.loads(summary.read_text())["status"])

    def done(self, key: str, retry_failed: bool = False) -> bool:
        """Whether the cell can be skipped (finished; with ``retry_failed``, not a failure)."""
        status = self.status(key)
        return status is not None and not (retry_failed and status in FAILED)

    def adversarials_path(self, key: str) -> Path:
        return self.dir / f"{key}.adv.npz"

    def write(self, key: str, summary: dict[str, Any], records: pd.DataFrame | None,
              x_adv: np.ndarray | None = None) -> None:
        """Store one finished cell atomically (records and ``x_adv`` first, then the summary)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        summary_path, records_path = self._paths(key)
        if records is not None and len(records):
            atomic_write(records_path, lambda p: records.to_parquet(p, index=False))
        else:
            records_path.unlink(missing_ok=True)
        if x_adv is not None:
            atomic_write(self.adversarials_path(key),
                         lambda p: np.savez_compressed(p, x_adv=x_adv))
        text = json.dumps(summary, default=_jsonable, sort_keys=True)
        atomic_write(summary_path, lambda p: p.write_text(text))

    def keys(self) -> list[str]:
        """Every finished cell's key (its summary JSON exists)."""
        if not self.dir.is_dir():
            return []
        return sorted(p.name.removesuffix(".json") for p in self.dir.glob("*.json")
                      if not p.name.startswith("."))

    def update(self, key: str, **fields: Any) -> None:
        """Rewrite a finished cell's summary with ``fields`` set (atomically)."""
        summary_path, _ = self._paths(key)
        summary = {**json.loads(summary_path.read_text()), **fields}
        text = json.dumps(summary, default=_jsonable, sort_keys=True)
        atomic_write(summary_path, lambda p: p.write_text(text))

    def read_adversarials(self, key: str) -> np.ndarray | None:
        """The cell's stored adversarial examples, or None if none were stored."""
        path = self.adversarials_path(key)
        if not path.is_file():
            return None
        with np.load(path) as f:
            return np.asarray(f["x_adv"])

    def read(self, key: str) -> tuple[dict[str, Any], pd.DataFrame | None]:
        summary_path, records_path = self._paths(key)
        summary = json.loads(summary_path.read_text())
        records = pd.read_parquet(records_path) if records_path.is_file() else None
        return summary, records


def atomic_write(path: Path, write: Any, suffix: str | None = None) -> None:
    """``write(tmp)`` then rename ``tmp`` to ``path`` (same directory): all or nothing.

    ``suffix``: the temporary file's ending (default ``path``'s; Keras wants ``.weights.h5``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # not mkstemp: its files are 0600; this one gets 0666 less the umask, as open() would
    tmp = path.parent / f".tmp-{secrets.token_hex(8)}{path.suffix if suffix is None else suffix}"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
