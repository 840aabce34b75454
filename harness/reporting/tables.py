"""The head-to-head table: one row per setting, one column group per (library, framework).

A row is keyed by every setting that varies within the results (:func:`row_keys`): the
model family, attack, norm, eps, targeting, threat model and transfer source always, and
``steps``, ``step_size``, ``restarts``, ``random_start``, ``target_mode``, ``budget``, each
``param_<name>``, ``library_options``, an eps ``search``, a ``check`` (convergence cells),
the data or the batch size whenever they differ
between cells of one attack (two models of one family in one framework get rows of their
own). No cell is ever dropped: two cells with the same key and
column are a bug, and :func:`table_rows` raises. Cells run with several experiment seeds
(``run_seed``) are shown as mean, sample sd and n over the seeds (or apart, ``per_seed``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from advharness.analytics.checks import checks_by_cell
from advharness.core.errors import HarnessError

#: Wilson 95 % intervals of the rates (the summary's ``<rate>_ci_low``/``_ci_high``): one
#: seed's cell shows its own; over several seeds the spread is the sd instead (NaN here).
INTERVALS = tuple(
    f"{rate}_ci_{side}"
    for rate in ("success_rate", "robust_accuracy", "success_rate_at_eps", "robust_accuracy_at_eps")
    for side in ("low", "high")
)
METRICS = (
    "success_rate",
    "robust_accuracy",
    "median_norm",
    "success_rate_at_eps",
    "robust_accuracy_at_eps",
    *INTERVALS,
    "time_s",
    "queries_per_sample",
    "queries_mean",
    "queries_median",
    "budget",
    "violation",
)
#: Metrics that get a sample sd over seeds.
SPREAD = ("success_rate", "robust_accuracy", "median_norm", "success_rate_at_eps", "robust_accuracy_at_eps")
#: Always part of a row's key.
BASE_KEYS = ("family", "attack", "norm", "eps", "targeted", "threat_model", "source_model")


def _g(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


#: Settings that join the key when they vary within one attack, with their compact label.
OPTIONAL_KEYS: dict[str, Callable[[Any], str]] = {
    "target_mode": lambda v: "least-likely" if v == "least_likely" else f"target={v}",
    "steps": lambda v: f"steps={_g(v)}",
    "step_size": lambda v: f"step={_g(v)}",
    "random_start": lambda v: "rs" if v else "no-rs",
    "restarts": lambda v: f"R={_g(v)}",
    "budget": lambda v: f"budget={_g(v)}",
    "query_levels": lambda v: f"q-levels={v}",
    "target_models": lambda v: f"judged on {v}" if v else "",
    "library_options": lambda v: f"options={v}" if v else "no options",
    "search": lambda v: _search_label(v) if v else "at eps",
    "check": lambda v: f"[{v} check]",
    "n": lambda v: f"n={_g(v)}",
    "data_sha256": lambda v: f"data={str(v)[:8]}",
    "batch_size": lambda v: f"batch={_g(v)}",
}


def _search_label(v: str) -> str:
    """``search`` JSON -> ``eps search 0.01..1 (8 bisections)``."""
    import json

    eps = json.loads(v)["eps"]
    return f"eps search {eps['start']:g}..{eps['max']:g} ({eps['steps']} bisections)"


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def prepare_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """A copy with every key column present and comparable: ``threat_model`` (white-box
    when absent), ``source_model`` (``-`` when none), numeric ``eps``, ``family`` grouping
    the torch and Keras versions of one model (a model's own name where one family has two
    models in one framework), ``violation`` and a default ``run_seed``."""
    s = summary.copy().reset_index(drop=True)
    if "threat_model" not in s:
        s["threat_model"] = "white-box"
    s["source_model"] = s["source_model"].fillna("-") if "source_model" in s else "-"
    s["eps"] = pd.to_numeric(s["eps"], errors="coerce") if "eps" in s else float("nan")
    if "family" not in s:
        s["family"] = s["model"]
    clash = s.groupby(["family", "framework"])["model"].transform("nunique") > 1
    s["family"] = s["family"].where(~clash, s["model"])
    s["violation"] = s["reason"].where(s["status"] == "violation", "")
    if "run_seed" not in s:
        s["run_seed"] = 0
    return s


def varying_by_attack(s: pd.DataFrame) -> dict[str, list[str]]:
    """For each attack, the ``param_*`` and :data:`OPTIONAL_KEYS` columns that take more
    than one value among its cells."""
    optional = [*OPTIONAL_KEYS, *sorted(c for c in s.columns if c.startswith("param_"))]
    out: dict[str, list[str]] = {str(a): [] for a in s["attack"].unique()}
    for col in optional:
        if col not in s:
            continue
        values = s[col].map(lambda v: None if _missing(v) else str(v))
        counts = values.groupby(s["attack"]).nunique(dropna=False)
        for attack in counts[counts > 1].index:
            out[str(attack)].append(col)
    return out


def row_keys(s: pd.DataFrame) -> list[str]:
    """The key columns: :data:`BASE_KEYS` and every column that varies within an attack."""
    varying = varying_by_attack(s)
    return [*BASE_KEYS, *dict.fromkeys(c for cols in varying.values() for c in cols)]


@dataclass
class Row:
    """One table row: its key, compact label and one :class:`Cell` per (library, framework)."""

    key: tuple[Any, ...]
    label: str
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)


@dataclass
class Cell:
    """One (row, library, framework) entry: its metrics (means over seeds), sds, counts."""

    status: str
    reason: str
    values: dict[str, Any]
    sd: dict[str, float] = field(default_factory=dict)
    n_seeds: int = 1
    n_failed_seeds: int = 0
    #: The content keys of the cells behind this entry (one per seed).
    cell_keys: tuple[str, ...] = ()


def label_of(key: dict[str, Any], shown: list[str], show_family: bool) -> str:
    """``pgd linf eps=0.1 steps=200 R=5 T (score-based)`` and the family on a second line;
    ``shown``: the settings beyond the base ones that tell this attack's rows apart."""
    text = f"{key['attack']} {key['norm']}" + ("" if _missing(key["eps"]) else f" eps={key['eps']:g}")
    for col in shown:
        v = key[col]
        if col.startswith("param_"):
            text += f" {col.removeprefix('param_')}={_g(v)}"
        elif col == "run_seed":
            text += f" seed={v}"
        elif not _missing(v) and (shown_as := OPTIONAL_KEYS[col](v)):
            text += " " + shown_as
    text += " T" if key["targeted"] else ""
    threat = key["threat_model"]
    text += {"white-box": "", "transfer": f" (transfer from {key['source_model']})"}.get(
        threat, f" ({threat})"
    )
    return text + (f"\n{key['family']}" if show_family else "")


def row_labels(summary: pd.DataFrame) -> pd.Series:
    """Each summary row's table label (first line only: the family is left out), on the
    summary's index: the row of the head-to-head table the cell lands in."""
    if summary.empty:
        return pd.Series([], index=summary.index, dtype=object)
    s = prepare_summary(summary)
    keys = row_keys(s)
    varying = varying_by_attack(s)
    labels = [
        label_of({c: None if _missing(r[c]) else r[c] for c in keys}, varying[str(r["attack"])], False)
        for _, r in s.iterrows()
    ]
    return pd.Series(labels, index=summary.index, dtype=object)


def table_rows(summary: pd.DataFrame, per_seed: bool = False) -> list[Row]:
    """The table's rows in first-appearance order (see the module docstring)."""
    return _build(summary, per_seed)[2]


def _build(summary: pd.DataFrame, per_seed: bool) -> tuple[list[str], bool, list[Row]]:
    """The key's column names, whether several seeds are pooled per row, and the rows."""
    if summary.empty:
        return [], False, []
    s = prepare_summary(summary)
    keys = row_keys(s)
    varying = varying_by_attack(s)
    seeds = ["run_seed"] if per_seed and s["run_seed"].nunique() > 1 else []
    keys = [*keys, *seeds]
    show_family = s["family"].nunique() > 1
    rows: dict[tuple[Any, ...], Row] = {}
    members: dict[tuple[Any, ...], dict[tuple[str, str], list[pd.Series]]] = {}
    for _, r in s.iterrows():
        k = tuple(None if _missing(r[c]) else r[c] for c in keys)
        if k not in rows:
            rows[k] = Row(
                k,
                label_of(dict(zip(keys, k, strict=True)), [*varying[str(r["attack"])], *seeds], show_family),
            )
            members[k] = {}
        members[k].setdefault((r["library"], r["framework"]), []).append(r)
    for k, groups in members.items():
        for col, cells in groups.items():
            seeds = [c["run_seed"] for c in cells]
            if len(set(seeds)) != len(seeds):
                ids = ", ".join(str(c.get("cell_key", c.get("cell"))) for c in cells)
                raise HarnessError(
                    f"cells {ids} share the table row {rows[k].label!r} for {col[0]} "
                    f"{col[1]}: the row key misses a setting that tells them apart (a bug)"
                )
            rows[k].cells[col] = _cell(cells)
    several = not per_seed and s["run_seed"].nunique() > 1
    return keys, several, list(rows.values())


def _cell(cells: list[pd.Series]) -> Cell:
    """One entry from its cells (one per seed): means over the ``ok`` ones."""
    ok = [c for c in cells if c["status"] == "ok"]
    keys = tuple(str(c["cell_key"]) for c in cells if "cell_key" in c and not _missing(c["cell_key"]))
    if not ok:
        first = cells[0]
        return Cell(
            str(first["status"]),
            str(first.get("reason", "")),
            {m: first.get(m) for m in METRICS},
            n_seeds=0,
            n_failed_seeds=len(cells),
            cell_keys=keys,
        )
    values: dict[str, Any] = {}
    sd: dict[str, float] = {}
    for m in METRICS:
        vals = [c.get(m) for c in ok]
        nums = [float(v) for v in vals if isinstance(v, int | float | np.number) and not _missing(v)]
        if m in INTERVALS and len(ok) > 1:
            values[m] = float("nan")
        elif m == "violation" or len(nums) != len(vals) or not nums:
            values[m] = vals[0] if len(ok) == 1 else (nums[0] if nums else vals[0])
        else:
            values[m] = float(np.mean(nums))
            if m in SPREAD and len(nums) > 1:
                sd[m] = float(np.std(nums, ddof=1))
    for col in ("n_eps_violations", "n_box_violations", "n_degenerate", "n_nonfinite", "low_clean_accuracy"):
        values[col] = sum(int(c.get(col) or 0) for c in ok)
    values["beats_white_box"] = any(bool(c.get("beats_white_box", False)) for c in ok)
    for col in ("threat_model", "substitute_queries", "kind"):
        values[col] = ok[0].get(col)
    return Cell("ok", "", values, sd, len(ok), len(cells) - len(ok), keys)


def cell_checks(cell: Cell, flagged: dict[str, list[str]]) -> list[str]:
    """The checks that flagged any of ``cell``'s cells (``flagged``: check names by
    ``cell_key``, :func:`advharness.analytics.checks_by_cell`), in order, once each."""
    return list(dict.fromkeys(name for key in cell.cell_keys for name in flagged.get(key, [])))


def head_to_head(
    summary: pd.DataFrame, per_seed: bool = False, checks: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Pivot per-cell summaries into the comparison table.

    Index: the row key (:func:`row_keys`; ``family`` groups the PyTorch and Keras versions of
    one model). Columns: (library, framework, metric) with :data:`METRICS` (the rates' Wilson
    intervals among them: ``<rate>_ci_low``/``_ci_high``) and ``status``;
    with several seeds also ``<metric>_sd`` and ``n_seeds`` (means over seeds are shown;
    ``per_seed=True`` keeps one row per seed instead). With ``checks`` (a
    :func:`advharness.analytics.sanity_checks` table) also ``checks``: the names of the
    checks that flagged the entry's cells, comma-separated (empty when none).
    """
    keys, several, rows = _build(summary, per_seed)
    if not rows:
        return pd.DataFrame()
    flagged = checks_by_cell(checks) if checks is not None else None
    metrics = [
        *METRICS,
        "status",
        *([f"{m}_sd" for m in SPREAD] + ["n_seeds"] if several else []),
        *(["checks"] if flagged is not None else []),
    ]
    data: dict[tuple[Any, ...], dict[tuple[str, str, str], Any]] = {}
    for row in rows:
        out: dict[tuple[str, str, str], Any] = {}
        for (lib, fw), cell in row.cells.items():
            for m in METRICS:
                out[(lib, fw, m)] = cell.values.get(m)
            out[(lib, fw, "status")] = cell.status
            if several:
                for m in SPREAD:
                    out[(lib, fw, f"{m}_sd")] = cell.sd.get(m, float("nan"))
                out[(lib, fw, "n_seeds")] = cell.n_seeds
            if flagged is not None:
                out[(lib, fw, "checks")] = ",".join(cell_checks(cell, flagged))
        data[
            tuple(
                "-" if _missing(v) and k == "source_model" else v for k, v in zip(keys, row.key, strict=True)
            )
        ] = out
    order = {m: i for i, m in enumerate(metrics)}
    groups = list(dict.fromkeys((c[0], c[1]) for out in data.values() for c in out))
    cols = sorted(
        {c for out in data.values() for c in out}, key=lambda c: (groups.index((c[0], c[1])), order[c[2]])
    )
    return pd.DataFrame(
        [[out.get(c) for c in cols] for out in data.values()],
        index=pd.MultiIndex.from_tuples(list(data), names=keys),
        columns=pd.MultiIndex.from_tuples(cols, names=["library", "framework", "metric"]),
    )
