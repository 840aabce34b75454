"""The cell store: one file pair per finished cell, written atomically as soon as it finishes.

``<run>/cells/<key>.json`` holds the cell's summary row, ``<key>.parquet`` its per-sample
records (absent for cells without records), ``<key>.adv.npz`` its adversarial examples
(``x_adv``, in the attacked model's layout, and for white-box cells ``x_seen``, the best
valid adversarial each sample's attack passed through; only with ``save_adversarials``),
``<key>.trace.npz`` a white-box cell's per-sample loss traces (only with ``save_traces``).
``<run>/probes/<model>-<data>.json`` holds a model's probes on the run's data. The records,
adversarials and traces are written first and the JSON last, each through a temporary file and
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
import re
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

    def traces_path(self, key: str) -> Path:
        return self.dir / f"{key}.trace.npz"

    def write(
        self,
        key: str,
        summary: dict[str, Any],
        records: pd.DataFrame | None,
        x_adv: np.ndarray | None = None,
        traces: dict[str, np.ndarray] | None = None,
        x_seen: np.ndarray | None = None,
    ) -> None:
        """Store one finished cell atomically (records, ``x_adv`` (with ``x_seen``) and
        ``traces`` first, then the summary)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        summary_path, records_path = self._paths(key)
        if records is not None and len(records):
            atomic_write(records_path, lambda p: records.to_parquet(p, index=False))
        else:
            records_path.unlink(missing_ok=True)
        if x_adv is not None:
            arrays: dict[str, Any] = {"x_adv": x_adv, **({"x_seen": x_seen} if x_seen is not None else {})}
            atomic_write(self.adversarials_path(key), lambda p: np.savez_compressed(p, **arrays))
        if traces is not None:
            saved: dict[str, Any] = dict(traces)
            atomic_write(self.traces_path(key), lambda p: np.savez_compressed(p, **saved))
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

    def read_adversarials(self, key: str, which: str = "x_adv") -> np.ndarray | None:
        """The cell's stored adversarial examples (``which="x_seen"``: the best seen on the
        attack's path), or None if none were stored."""
        path = self.adversarials_path(key)
        if not path.is_file():
            return None
        with np.load(path) as f:
            return np.asarray(f[which]) if which in f.files else None

    def read_traces(self, key: str) -> dict[str, np.ndarray] | None:
        """The cell's stored loss traces (``loss``, ``length``, ``start``), or None."""
        path = self.traces_path(key)
        if not path.is_file():
            return None
        with np.load(path) as f:
            return {k: np.asarray(f[k]) for k in f.files}

    def probes_path(self, model: str, data_sha256: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", model)
        return self.dir.parent / "probes" / f"{safe}-{data_sha256[:16]}.json"

    def write_probes(self, entry: dict[str, Any]) -> None:
        """Store one model's probes (``model``, ``data_sha256``, ...) atomically."""
        text = json.dumps(entry, default=_jsonable, sort_keys=True)
        atomic_write(self.probes_path(entry["model"], entry["data_sha256"]), lambda p: p.write_text(text))

    def read_probes(self, model: str, data_sha256: str) -> dict[str, Any] | None:
        """One model's stored probes on that data, or None (absent or unreadable: logged)."""
        path = self.probes_path(model, data_sha256)
        return _read_json(path) if path.is_file() else None

    def all_probes(self) -> list[dict[str, Any]]:
        """Every stored model's probes (unreadable files are logged and skipped)."""
        folder = self.dir.parent / "probes"
        paths = (
            sorted(p for p in folder.glob("*.json") if not p.name.startswith(".")) if folder.is_dir() else []
        )
        return [e for e in map(_read_json, paths) if e is not None]

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


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        out = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        log.warning("%s is unreadable (%s: %s); ignored", path, type(e).__name__, e)
        return None
    return out if isinstance(out, dict) else None


def _jsonable(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
