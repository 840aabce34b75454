"""Column conventions shared by the analytics: which columns identify a cell, a setting, a
sample, and how records are grouped and matched.

The records carry the cell's identity (:data:`CELL_COLUMNS`, ``eps``) but not its settings
(``steps``, ``param_<name>``...): :func:`with_settings` copies them from the summary, so
that two cells of a grid (``steps: [10, 20]``) stay apart wherever cells are grouped or
paired. Every function here is pure: it returns new frames and never changes its inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from advharness.judging.referee import input_scale

#: What identifies a cell's result in the records (besides ``cell_key``): the model, the
#: implementation and the threat model. ``eps`` is added where it matters.
CELL_COLUMNS = (
    "model",
    "framework",
    "library",
    "attack",
    "kind",
    "norm",
    "targeted",
    "threat_model",
    "run_seed",
)
#: Summary columns that tell two cells of one attack apart (plus every ``param_<name>``).
SETTING_COLUMNS = (
    "steps",
    "step_size",
    "restarts",
    "random_start",
    "target_mode",
    "budget",
    "query_levels",
    "library_options",
    "source_model",
    "target_models",
    "data_sha256",
    "batch_size",
)


def present(frame: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    """The ``columns`` that ``frame`` has, in the given order."""
    return [c for c in columns if c in frame.columns]


def setting_columns(frame: pd.DataFrame) -> list[str]:
    """The :data:`SETTING_COLUMNS` and ``param_<name>`` columns of ``frame`` that take more
    than one value among one attack's rows (as the head-to-head table's row key does):
    settings every cell shares tell nothing apart."""
    candidates = [
        *present(frame, SETTING_COLUMNS),
        *sorted(c for c in frame.columns if c.startswith("param_")),
    ]
    out = []
    for col in candidates:
        values = frame[col].map(lambda v: None if _missing(v) else str(v))
        by = frame["attack"] if "attack" in frame.columns else pd.Series(0, index=frame.index)
        if (values.groupby(by, sort=False).nunique(dropna=False) > 1).any():
            out.append(col)
    return out


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))


def with_settings(records: pd.DataFrame, summary: pd.DataFrame | None) -> pd.DataFrame:
    """``records`` with each cell's varying settings (:func:`setting_columns`) and its
    ``bounds_low``/``bounds_high`` copied from ``summary`` (matched on ``cell``); unchanged
    (a copy) when ``summary`` is None or lacks ``cell``."""
    out = records.copy()
    if summary is None or "cell" not in summary.columns or "cell" not in out.columns:
        return out
    extra = [c for c in [*setting_columns(summary), "bounds_low", "bounds_high"] if c in summary.columns]
    extra = [c for c in extra if c not in out.columns]
    if not extra:
        return out
    table = summary[["cell", *extra]].drop_duplicates("cell")
    return out.merge(table, on="cell", how="left", validate="many_to_one")


def one_per_sample(records: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, sample): a minimum-norm cell reported at several radii has its
    samples once per radius in the records; its ``eps`` (a reporting radius) becomes NaN."""
    if "cell_key" not in records.columns:
        return records.copy()
    out = records.drop_duplicates(["cell_key", "sample"]).copy()
    if "kind" in out.columns and "eps" in out.columns:
        out["eps"] = out["eps"].where(out["kind"] != "minimal", np.nan).astype("float64")
    return out.reset_index(drop=True)


def scales(frame: pd.DataFrame) -> np.ndarray:
    """Per row, the inputs' magnitude ``max(1, |low|, |high|)`` of the model's bounds
    (:func:`advharness.judging.referee.input_scale`); 1 where the bounds are unknown."""
    if not {"bounds_low", "bounds_high"} <= set(frame.columns):
        return np.ones(len(frame))
    low = pd.to_numeric(frame["bounds_low"], errors="coerce").fillna(0.0).to_numpy()
    high = pd.to_numeric(frame["bounds_high"], errors="coerce").fillna(1.0).to_numpy()
    return np.array([input_scale((lo, hi)) for lo, hi in zip(low, high, strict=True)], dtype=np.float64)


def group_columns(frame: pd.DataFrame, exclude: Sequence[str] = (), eps: bool = True) -> list[str]:
    """The columns that identify a setting in ``frame``: :data:`CELL_COLUMNS`, ``eps`` (when
    ``eps``) and the settings, less ``exclude``."""
    base = [*CELL_COLUMNS, *(["eps"] if eps else []), *setting_columns(frame)]
    return [c for c in present(frame, base) if c not in exclude]


def groups(frame: pd.DataFrame, keys: Sequence[str]) -> Iterable[tuple[dict[str, Any], pd.DataFrame]]:
    """``(key values, rows)`` per group of ``frame`` on ``keys`` in first-appearance order;
    missing values (NaN, None) form groups of their own."""
    if not keys:
        yield {}, frame
        return
    for values, rows in frame.groupby(list(keys), dropna=False, sort=False):
        vals = values if isinstance(values, tuple) else (values,)
        yield dict(zip(keys, vals, strict=True)), rows


def proportion(mask: np.ndarray, of: np.ndarray | None = None) -> float:
    """Share of True in ``mask`` (among ``of`` when given); NaN when there is nothing."""
    m = np.asarray(mask, bool)
    if of is not None:
        m = m[np.asarray(of, bool)]
    return float(m.mean()) if len(m) else float("nan")
