"""What the sanity checks share: the frames they read, the finding each returns, and the
per-sample matching of cells that ran on the same samples.

The checks read only the ``ok`` cells. Two cells are compared sample by sample when they
ran on the same model, norm, targeting, seed and data (:data:`POOL`, and ``eps`` where the
check compares at one radius), matched on ``sample`` and ``target``. A sample is *broken*
by a cell when it was initially correct and the cell succeeded within the row's eps
(``success_at_eps``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from advharness.analytics.frames import groups, present, setting_columns, with_settings
from advharness.judging.referee import NOISE_ATTACK

#: What makes two cells comparable sample by sample (those present), ``eps`` included.
POOL = ("model", "framework", "norm", "eps", "targeted", "run_seed", "data_sha256")
#: The columns that match one sample across cells.
SAMPLE_KEYS = ("sample", "target")


@dataclass(frozen=True)
class Finding:
    """One flag raised by a check: the cells it flags (``cell_keys``), the cells they were
    compared with (``references``), the samples (empty for a flag on a rate or a model),
    the measured ``value`` and a one-line ``message``. ``rule``, ``threshold``, ``source``
    and ``severity`` override the registry's (model probes carry their own)."""

    cell_keys: tuple[str, ...]
    value: float
    message: str
    model: str = ""
    norm: str = ""
    eps: float = float("nan")
    samples: tuple[int, ...] = ()
    references: tuple[str, ...] = ()
    rule: str | None = None
    threshold: str | None = None
    source: str | None = None
    severity: str | None = None


@dataclass(frozen=True)
class Frames:
    """The inputs of every check: the ``ok`` summary rows, their records (with each cell's
    varying settings, bounds and ``data_sha256`` from the summary), the model probes
    (None when there are none) and the caller's "large eps" radii by norm."""

    summary: pd.DataFrame
    records: pd.DataFrame
    probes: pd.DataFrame | None
    large_eps: Mapping[str, float]


def prepare(
    summary: pd.DataFrame,
    records: pd.DataFrame | None,
    probes: pd.DataFrame | None = None,
    large_eps: Mapping[str, float] | None = None,
) -> Frames:
    """:class:`Frames` from a run's tables (copies; the inputs are not changed)."""
    ok = summary[summary["status"] == "ok"] if "status" in summary.columns else summary
    ok = ok.reset_index(drop=True)
    recs = records if records is not None else pd.DataFrame()
    if len(recs) and "cell_key" in recs.columns and "cell_key" in ok.columns:
        recs = recs[recs["cell_key"].isin(set(ok["cell_key"]))]
        recs = with_settings(recs, ok)
        if "data_sha256" in ok.columns and "data_sha256" not in recs.columns and "cell" in recs.columns:
            recs = recs.assign(
                data_sha256=recs["cell"].map(ok.drop_duplicates("cell").set_index("cell")["data_sha256"])
            )
    else:
        recs = recs.iloc[0:0].copy()
    return Frames(
        summary=ok,
        records=recs.reset_index(drop=True),
        probes=probes if probes is not None and len(probes) else None,
        large_eps=dict(large_eps or {}),
    )


def is_white_box(frame: pd.DataFrame) -> pd.Series:
    """Rows of a white-box attack (the ``noise`` baseline is never one)."""
    threat = frame["threat_model"] if "threat_model" in frame.columns else pd.Series("white-box", frame.index)
    return (threat == "white-box") & (frame["attack"] != NOISE_ATTACK)


def pool_groups(records: pd.DataFrame, eps: bool = True) -> Iterable[tuple[dict[str, Any], pd.DataFrame]]:
    """The records grouped by :data:`POOL` (without ``eps`` when ``eps`` is False); rows
    without an eps are left out when ``eps`` is True."""
    keys = [k for k in present(records, POOL) if eps or k != "eps"]
    if eps and "eps" in records.columns:
        records = records[records["eps"].notna()]
    return groups(records, keys)


def per_sample(cell: pd.DataFrame, column: str = "success_at_eps") -> pd.DataFrame:
    """One cell's records indexed by :data:`SAMPLE_KEYS`: ``correct`` and ``broken``
    (correct and ``column``)."""
    keys = present(cell, SAMPLE_KEYS)
    correct = cell["correct"].astype(bool).to_numpy()
    broken = correct & cell[column].astype(bool).to_numpy()
    out = pd.DataFrame({"correct": correct, "broken": broken}, index=pd.MultiIndex.from_frame(cell[keys]))
    return out[~out.index.duplicated()]


def matched(a: pd.DataFrame, b: pd.DataFrame, column: str = "success_at_eps") -> pd.DataFrame:
    """Two cells' samples side by side (only those both ran, initially correct in both):
    ``broken_a``, ``broken_b``, indexed by the sample keys."""
    pa, pb = per_sample(a, column), per_sample(b, column)
    both = pa.add_suffix("_a").join(pb.add_suffix("_b"), how="inner")
    return both[both["correct_a"] & both["correct_b"]][["broken_a", "broken_b"]]


def sample_ids(index: pd.Index) -> tuple[int, ...]:
    """The ``sample`` numbers of a :func:`per_sample` index, sorted, without repeats."""
    values = index.get_level_values("sample") if "sample" in (index.names or []) else index
    return tuple(sorted({int(v) for v in values}))


def cells(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """``frame``'s rows by ``cell_key``, in first-appearance order."""
    return {str(k): rows for k, rows in frame.groupby("cell_key", sort=False)}


def first(frame: pd.DataFrame, column: str, default: Any = "") -> Any:
    """The first value of ``column`` (``default`` when absent or empty)."""
    return frame[column].iloc[0] if column in frame.columns and len(frame) else default


def labels(summary: pd.DataFrame) -> dict[str, str]:
    """A short label per ``cell_key``: ``pgd (foolbox, steps=1, step_size=0.001)``, with the
    settings that tell the attack's cells apart."""
    settings = [c for c in setting_columns(summary) if c != "data_sha256"]
    out: dict[str, str] = {}
    for _, row in summary.drop_duplicates("cell_key").iterrows():
        parts = [str(row.get("library", ""))]
        parts += [
            f"{c.removeprefix('param_')}={_short(row[c])}"
            for c in settings
            if not _missing(row[c]) and row[c] != ""
        ]
        threat = row.get("threat_model", "white-box")
        parts += [] if threat in ("white-box", None) else [str(threat)]
        out[str(row["cell_key"])] = f"{row['attack']} ({', '.join(p for p in parts if p)})"
    return out


def _short(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float | np.floating) else str(v)


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float | np.floating) and bool(np.isnan(v)))


def where(ident: Mapping[str, Any] | pd.Series) -> str:
    """``model m, linf eps=0.1`` (``, targeted``) from a group's key values or a row."""
    text = f"model {ident.get('model', '?')}, {ident.get('norm', '?')}"
    eps = ident.get("eps")
    if eps is not None and not _missing(eps):
        text += f" eps={_short(float(eps))}"
    return text + (", targeted" if ident.get("targeted") else "")


def listed(samples: tuple[int, ...], most: int = 10) -> str:
    """``1, 4, 7`` (and ``... (+N)`` past ``most``)."""
    head = ", ".join(map(str, samples[:most]))
    return head + (f", ... (+{len(samples) - most})" if len(samples) > most else "")


def at(ident: Any) -> dict[str, Any]:
    """The ``model``, ``norm`` and ``eps`` fields of a finding from a group's key values or
    a summary row."""
    get = ident.get
    eps = get("eps")
    return {
        "model": str(get("model", "")),
        "norm": str(get("norm", "")),
        "eps": float("nan") if eps is None or pd.isna(eps) else float(eps),
    }
