"""The cell store: one file pair per finished cell, written atomically as soon as it finishes.

``<run>/cells/<key>.json`` holds the cell's summary row, ``<key>.parquet`` its per-sample
records (absent for cells without records), ``<key>.adv.npz`` its adversarial examples
(``x_adv``, in the attacked model's layout; only with ``save_adversarials``). The records
and adversarials are written first and the JSON last, each through a temporary file and
``os.replace``, so a cell counts as finished exactly when its JSON exists, and a run killed
at any moment (SIGKILL included) leaves only whole cells behind. Each file and its
directory are fsynced, so a power loss does not leave an empty file under a cell's name
either; a stored cell that cannot be read all the same (an empty or corrupt JSON, a
truncated Parquet) counts as not stored: a warning names the file and the cell runs again.
``key`` is the cell's content hash (see :mod:`advharness.execution.plan`), so re-running an experiment
finds what is already done.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from advharness.core.atomic import atomic_write
from advharness.core.errors import HarnessError, one_line

log = logging.getLogger(__name__)

#: Statuses that ``--retry-failed`` runs again (``unsupported`` and ``violation`` are results).
FAILED = frozenset({"error", "timeout", "crashed"})


class CellStore:
    """Finished cells of one run directory."""

    def __init__(self, run_dir: str | Path) -> None:
        self.dir = Path(run_dir) / "cells"

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.dir / f"{key}.json", self.dir / f"{key}.parquet"

    def status(self, key: str) -> str | None:
        """The stored cell's status, or None if it has not finished or cannot be read (an
        unreadable summary, or records whose Parquet footer is missing: logged, so the
        cell runs again and its new files replace these)."""
        summary, records = self._paths(key)
        if not summary.is_file():
            return None
        try:
            status = json.loads(summary.read_text())["status"]
            if not isinstance(status, str):
                raise ValueError(f"status is {status!r}")
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning(
                "stored cell %s is unreadable (%s: %s); it will run again", summary, type(e).__name__, e
            )
            return None
        if records.is_file():
            import pyarrow.parquet as pq

            try:
                pq.read_metadata(records)
            except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
                log.warning(
                    "stored records %s are unreadable (%s: %s); the cell will run again",
                    records,
                    type(e).__name__,
                    e,
                )
                return None
        return status

    def done(self, key: str, retry_failed: bool = False) -> bool:
        """Whether the cell can be skipped (finished; with ``retry_failed``, not a failure)."""
        status = self.status(key)
        return status is not None and not (retry_failed and status in FAILED)

    def adversarials_path(self, key: str) -> Path:
        return self.dir / f"{key}.adv.npz"

    def write(
        self, key: str, summary: dict[str, Any], records: pd.DataFrame | None, x_adv: np.ndarray | None = None
    ) -> None:
        """Store one finished cell atomically (records and ``x_adv`` first, then the summary)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        summary_path, records_path = self._paths(key)
        if records is not None and len(records):
            atomic_write(records_path, lambda p: records.to_parquet(p, index=False))
        else:
            records_path.unlink(missing_ok=True)
        if x_adv is not None:
            atomic_write(self.adversarials_path(key), lambda p: np.savez_compressed(p, x_adv=x_adv))
        text = json.dumps(summary, default=_jsonable, sort_keys=True)
        atomic_write(summary_path, lambda p: p.write_text(text))

    def keys(self) -> list[str]:
        """Every finished, readable cell's key (see :meth:`status`)."""
        if not self.dir.is_dir():
            return []
        keys = (p.name.removesuffix(".json") for p in self.dir.glob("*.json") if not p.name.startswith("."))
        return sorted(k for k in keys if self.status(k) is not None)

    def write_plan(self, plan: dict[str, Any]) -> None:
        """Record one run's plan (``plans/<time>-<pid>.json``, atomically): see
        :meth:`plans`."""
        name = f"{plan['planned_at']:.6f}-{os.getpid()}.json"
        text = json.dumps(plan, default=_jsonable, sort_keys=True)
        atomic_write(self.dir.parent / "plans" / name, lambda p: p.write_text(text))

    def plans(self) -> list[dict[str, Any]]:
        """Every recorded plan, oldest first (an unreadable one is logged and skipped)."""
        folder = self.dir.parent / "plans"
        out = []
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            if path.name.startswith("."):
                continue
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError) as e:
                log.warning("plan %s is unreadable (%s: %s); ignored", path, type(e).__name__, e)
        return sorted(out, key=lambda p: float(p.get("planned_at", 0.0)))

    def read_adversarials(self, key: str) -> np.ndarray | None:
        """The cell's stored adversarial examples, or None if none were stored."""
        path = self.adversarials_path(key)
        if not path.is_file():
            return None
        with np.load(path) as f:
            return np.asarray(f["x_adv"])

    def read(self, key: str) -> tuple[dict[str, Any], pd.DataFrame | None]:
        """A stored cell's summary and records (one-line error naming an unreadable file)."""
        summary_path, records_path = self._paths(key)
        path = summary_path
        try:
            summary = json.loads(summary_path.read_text())
            path = records_path
            records = pd.read_parquet(records_path) if records_path.is_file() else None
        except (OSError, ValueError) as e:
            raise HarnessError(
                f"stored cell file {path} is unreadable ({one_line(e)}); "
                "delete it and run again to recompute the cell"
            ) from None
        return summary, records


def _jsonable(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
