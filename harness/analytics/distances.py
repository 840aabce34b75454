"""Per-sample distances and their empirical distribution.

A sample's *distance* for one cell is the size of the smallest adversarial perturbation
that cell found for it, in the cell's norm (AttackBench's convention, Cinà et al. 2024):

* a sample the model already misclassifies: ``0``;
* a minimum-norm cell: the norm of its refereed success; ``+inf`` when it found none;
* a cell whose records carry ``search_eps`` (a per-sample eps search of a fixed-budget
  attack): that value; ``+inf`` where it is NaN or infinite (no eps broke the sample);
* other fixed-budget cells say only whether the sample broke at their eps: left out by
  default (``fixed="skip"``); ``fixed="norm"`` uses the norm of each success, an upper
  bound on the sample's minimal distance, not a minimum.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from advharness.analytics.frames import (
    CELL_COLUMNS,
    groups,
    one_per_sample,
    present,
    scales,
    setting_columns,
    with_settings,
)
from advharness.judging.referee import within_eps

log = logging.getLogger(__name__)

#: The identifying columns of a distances table (those present), then the per-sample ones.
SAMPLE_COLUMNS = ("sample", "target", "correct", "broken", "distance", "distance_source", "scale")


def per_sample_distances(
    records: pd.DataFrame, summary: pd.DataFrame | None = None, fixed: str = "skip"
) -> pd.DataFrame:
    """One row per (cell, sample): the cell's identity (``cell_key``, :data:`CELL_COLUMNS`,
    ``eps``: NaN for minimum-norm cells, whose radius is only a reporting choice; with
    ``summary``, also the cells' settings), ``sample``, ``target``, ``correct``, ``broken``
    (a valid adversarial was found), ``distance`` (see the module docstring),
    ``distance_source`` (``norm``, ``search_eps`` or ``fixed_norm``) and ``scale`` (the
    inputs' magnitude, for the referee's tolerances; 1 without ``summary``)."""
    if fixed not in ("skip", "norm"):
        raise ValueError(f"fixed must be 'skip' or 'norm', not {fixed!r}")
    if records.empty:
        return pd.DataFrame(columns=["cell_key", *CELL_COLUMNS, "eps", *SAMPLE_COLUMNS])
    recs = one_per_sample(with_settings(records, summary))
    recs["scale"] = scales(recs)
    settings = setting_columns(recs)
    parts = []
    for _, cell in groups(recs, present(recs, ["cell_key"])):
        correct = cell["correct"].to_numpy(bool)
        has_search = "search_eps" in cell.columns and cell["search_eps"].notna().any()
        if has_search:
            found = pd.to_numeric(cell["search_eps"], errors="coerce").to_numpy(dtype=np.float64)
            broken = correct & np.isfinite(found)
            source = "search_eps"
        else:
            minimal = str(cell["kind"].iloc[0]) == "minimal" if "kind" in cell.columns else True
            if not minimal and fixed == "skip":
                log.debug("cell %s: fixed-budget without search_eps, no distances", cell["cell_key"].iloc[0])
                continue
            found = cell[str(cell["norm"].iloc[0])].to_numpy(dtype=np.float64)
            broken = correct & cell["success"].to_numpy(bool)
            source = "norm" if minimal else "fixed_norm"
        distance = np.where(correct, np.where(broken, found, np.inf), 0.0)
        ident = present(cell, ["cell_key", *CELL_COLUMNS, "eps"])
        part = cell[[*ident, *settings, *present(cell, ["sample", "target"])]].copy()
        part["correct"] = correct
        part["broken"] = broken
        part["distance"] = distance
        part["distance_source"] = source
        part["scale"] = cell["scale"].to_numpy()
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=["cell_key", *CELL_COLUMNS, "eps", *SAMPLE_COLUMNS])
    return pd.concat(parts, ignore_index=True)


def step_radii(distances: np.ndarray | pd.Series) -> np.ndarray:
    """The radii where a distance CDF steps: 0 and every distinct finite positive
    distance, ascending."""
    d = np.asarray(distances, dtype=np.float64)
    return np.unique(np.concatenate([[0.0], d[np.isfinite(d) & (d > 0)]]))


def distance_cdf(distances: pd.DataFrame, radii: Any = None) -> pd.DataFrame:
    """Per cell of a :func:`per_sample_distances` table, the empirical CDF of the distances:
    ``cdf`` = share of the cell's samples whose distance is within ``radius`` (the
    referee's tolerance :func:`~advharness.judging.referee.within_eps`), and
    ``robust_accuracy`` = ``1 - cdf`` (misclassified samples sit at 0, so this is the
    security curve). ``radii``: the radii to evaluate (default: each cell's exact steps,
    :func:`step_radii`). Columns: the cell's identity, ``radius``, ``cdf``,
    ``robust_accuracy``, ``n``."""
    ident = present(distances, ["cell_key", *CELL_COLUMNS, "eps"])
    rows = []
    for _, cell in groups(distances, present(distances, ["cell_key"])):
        d = cell["distance"].to_numpy(dtype=np.float64)
        scale = float(cell["scale"].iloc[0]) if "scale" in cell.columns else 1.0
        grid = step_radii(d) if radii is None else np.asarray(list(radii), dtype=np.float64)
        first = cell.iloc[0]
        for r in grid:
            cdf = float(within_eps(d, float(r), scale).mean()) if len(d) else float("nan")
            rows.append(
                {
                    **{c: first[c] for c in ident},
                    "radius": float(r),
                    "cdf": cdf,
                    "robust_accuracy": 1.0 - cdf,
                    "n": len(d),
                }
            )
    return pd.DataFrame(rows)
