"""A run's result (summary + per-sample records) and the one way its table is assembled."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from advharness.analytics.intervals import summary_intervals
from advharness.config.catalogue import CLEAN_ACCURACY_FLOOR
from advharness.judging.referee import flag_gradient_masking, flag_low_clean_accuracy, report_at_eps


@dataclass
class RunResult:
    """What a run produced: per-cell ``summary`` and per-sample ``records`` DataFrames."""

    summary: pd.DataFrame
    records: pd.DataFrame
    manifest: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    #: Stored cells left out because a newer cell of the same setting replaced them.
    superseded: int = 0
    #: Adversarial examples by ``cell`` (the summary's column), in the attacked model's
    #: layout; set by ``run_attacks(..., return_adversarials=True)``, else None (see
    #: :func:`advharness.reporting.results.read_adversarials` for a results directory).
    adversarials: dict[int, np.ndarray] | None = None
    #: Model probes, one row per (model, data, probe) (see :func:`probes_table`).
    probes: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Per-sample loss traces by ``cell`` (white-box cells); set by
    #: ``run_attacks(..., return_traces=True)``, else None (see
    #: :func:`advharness.reporting.results.read_traces` for a results directory).
    traces: dict[int, dict[str, np.ndarray]] | None = None

    def table(self) -> pd.DataFrame:
        """The head-to-head table (see :func:`advharness.reporting.tables.head_to_head`)."""
        from advharness.reporting.tables import head_to_head

        return head_to_head(self.summary)


def assemble(cells: Iterable[tuple[dict[str, Any], pd.DataFrame | None, float | None]]) -> RunResult:
    """The result tables from stored or fresh cells: ``(row, records, report_eps)`` each.

    Each row is reported at its radius (:func:`advharness.judging.referee.report_at_eps`), flagged
    ``low_clean_accuracy`` below its ``clean_accuracy_floor``, given a Wilson 95 % interval
    for each success rate and robust accuracy
    (:func:`advharness.analytics.intervals.summary_intervals`) and numbered (``cell``); its
    records get the cell's identifying columns, so no analysis needs to parse a spec string.
    """
    rows, parts, idents = [], [], []
    ids = (
        "cell",
        "cell_key",
        "library",
        "framework",
        "model",
        "attack",
        "kind",
        "norm",
        "eps",
        "targeted",
        "threat_model",
    )
    for i, (stored, records, eps) in enumerate(cells):
        row, records = report_at_eps(
            stored, records, eps, str(stored.get("norm")), stored.get("kind") == "minimal"
        )
        row = {"cell": i, **row}
        rows.append(row)
        if records is not None and len(records):
            ident = {k: row.get(k) for k in ids}
            if "run_seed" in row:
                ident["run_seed"] = row["run_seed"]
            parts.append(records.drop(columns=[c for c in ident if c in records.columns]))
            idents.append(ident)
    summary = tidy_summary(pd.DataFrame(rows))
    if len(summary):
        summary["beats_white_box"] = flag_gradient_masking(summary)
        floor = summary.get("clean_accuracy_floor", pd.Series(CLEAN_ACCURACY_FLOOR, index=summary.index))
        summary["low_clean_accuracy"] = flag_low_clean_accuracy(summary, floor.fillna(CLEAN_ACCURACY_FLOOR))
        summary = summary_intervals(summary)
    records_df = with_identity(parts, idents) if parts else pd.DataFrame()
    return RunResult(summary=summary, records=records_df)


def with_identity(parts: list[pd.DataFrame], idents: list[dict[str, Any]]) -> pd.DataFrame:
    """Every cell's records in one frame, each row led by its cell's identifying columns
    (``idents``, one dict per part): one concatenation and one repeat, not a column
    assignment per cell (slow with thousands of cells)."""
    body = pd.concat(parts, ignore_index=True)
    front = pd.DataFrame(idents)
    front = front.loc[front.index.repeat([len(p) for p in parts])].reset_index(drop=True)
    return pd.concat([front, body], axis=1)


PROBE_COLUMNS = (
    "model",
    "framework",
    "probe",
    "flagged",
    "value",
    "threshold",
    "rule",
    "source",
    "n_samples",
    "samples",
    "detail",
    "data_sha256",
    "batch_size",
    "parameter_hash",
)


def probes_table(entries: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per (model, data, probe) from stored or fresh probe entries (see
    :func:`advharness.execution.probing.probe_entry`); ``samples`` as a comma-separated
    string of sample indices."""
    rows = []
    for e in entries:
        for p in e.get("probes", []):
            rows.append(
                {
                    **{
                        k: e.get(k)
                        for k in ("model", "framework", "data_sha256", "batch_size", "parameter_hash")
                    },
                    **p,
                    "samples": ",".join(str(i) for i in p.get("samples", [])),
                }
            )
    table = pd.DataFrame(rows, columns=list(PROBE_COLUMNS))
    return table.astype({"flagged": bool}) if len(table) else table


def tidy_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """Column types a reader can rely on: numeric ``eps``/``step_size`` (NaN where none),
    nullable integers for ``steps``/``restarts``/``budget``, ``search`` empty where none,
    ``device`` ``cpu`` where none (cells stored before the field), and
    ``param_*`` columns that mix strings and numbers (different attacks) as strings."""
    s = summary.copy()
    for col in ("eps", "step_size"):
        if col in s:
            s[col] = pd.to_numeric(s[col], errors="coerce").astype("float64")
    for col in ("steps", "restarts", "budget"):
        if col in s:
            s[col] = pd.to_numeric(s[col], errors="coerce").astype("Int64")
    if "search" in s:  # cells stored before eps searches existed have no such column
        s["search"] = s["search"].fillna("")
    if "device" in s:  # cells stored before the device field ran on the CPU
        s["device"] = s["device"].fillna("cpu")
    for col in [c for c in s.columns if c.startswith("param_")]:
        values = s[col].dropna()
        if values.map(type).nunique() > 1 and (values.map(lambda v: isinstance(v, str))).any():
            s[col] = s[col].map(
                lambda v: (
                    v if v is None or isinstance(v, str) or (isinstance(v, float) and np.isnan(v)) else str(v)
                )
            )
    return s
