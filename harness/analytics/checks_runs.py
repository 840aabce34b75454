"""Sanity checks on how each attack ran and on the model: the model probes (AutoAttack's
flags, Pintor et al. 2022's Indicator I1), convergence cells (doubled steps or restarts,
Carlini et al. 2019), the loss still falling at the end (Indicator I4), silent successes
(Indicator I3) and libraries that disagree. Each function takes the checks'
:class:`~advharness.analytics.checks_base.Frames` and returns its findings; the registry
(:mod:`advharness.analytics.checks`) states each rule, threshold and source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from advharness.analytics.agreement import library_agreement
from advharness.analytics.checks_base import (
    Finding,
    Frames,
    at,
    cells,
    labels,
    listed,
    matched,
    sample_ids,
    where,
)
from advharness.analytics.frames import one_per_sample, present

#: The model probes the checks know (the probes table's ``probe`` column).
PROBES = ("zero_gradients", "randomness", "batch_size_dependence", "softmax_output")
#: A convergence cell (doubled steps or restarts) must not break more than this many more
#: samples, nor a larger share of the initially correct ones, than its base cell.
CONVERGENCE_MIN_SAMPLES = 1
CONVERGENCE_MIN_GAIN = 0.02
#: The share of attacked samples that failed with their loss still falling (I4).
INCOMPLETE_SHARE = 0.1
#: Two libraries' success must agree on at least this share of the samples.
MIN_AGREEMENT = 0.9


def probe_check(probe: str | None) -> Callable[[Frames], list[Finding]]:
    """The check of one model probe (``None``: every probe not in :data:`PROBES`): each
    flagged probe row becomes a finding on every cell of its model, with the probe's own
    ``rule``, ``threshold`` and ``source`` when it gives them."""

    def check(frames: Frames) -> list[Finding]:
        probes = frames.probes
        if probes is None:
            return []
        names = probes["probe"].astype(str)
        mine = probes[names == probe] if probe is not None else probes[~names.isin(PROBES)]
        mine = mine[mine["flagged"].fillna(False).astype(bool)]
        out = []
        for _, row in mine.iterrows():
            model = str(row["model"])
            keys = frames.summary.loc[frames.summary["model"].astype(str) == model, "cell_key"]
            value = pd.to_numeric(pd.Series([row.get("value")]), errors="coerce").iloc[0]
            out.append(
                Finding(
                    tuple(dict.fromkeys(keys.astype(str))),
                    float(value),
                    f"model {model}: probe {row['probe']} flagged (value {_text(row.get('value'))}, "
                    f"threshold {_text(row.get('threshold'))}); concerns its {keys.nunique()} cells",
                    model=model,
                    rule=_given(row.get("rule")),
                    threshold=_given(row.get("threshold")),
                    source=_given(row.get("source")),
                )
            )
        return out

    check.__doc__ = f"Model probe {probe or 'other'}: flagged rows, passed through."
    return check


def _given(v: Any) -> str | None:
    """A probe's own text, or None (the registry's) when it gives none."""
    return None if v is None or (isinstance(v, float) and np.isnan(v)) or str(v) == "" else str(v)


def _text(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float | np.floating) else str(v)


def convergence_gain(frames: Frames) -> list[Finding]:
    """A convergence cell (``check == "convergence"``) that broke more samples than its
    base cell (``base_cell_key``) on the same samples: more than
    :data:`CONVERGENCE_MIN_SAMPLES` and :data:`CONVERGENCE_MIN_GAIN` of them, at some
    eps (the largest gain is reported)."""
    s, recs = frames.summary, frames.records
    if recs.empty:
        return []
    names = labels(s)
    pairs = s[s["check"].astype(str) == "convergence"].drop_duplicates("cell_key")
    out = []
    for _, row in pairs.iterrows():
        key, base = str(row["cell_key"]), str(row["base_cell_key"])
        doubled, original = recs[recs["cell_key"] == key], recs[recs["cell_key"] == base]
        if doubled.empty or original.empty:
            continue
        best: tuple[int, float, float, tuple[int, ...], int] | None = None
        for eps in _radii(doubled):
            m = matched(_at_eps(original, eps), _at_eps(doubled, eps))
            if m.empty:
                continue
            gain = int(m["broken_b"].sum()) - int(m["broken_a"].sum())
            share = gain / len(m)
            if (
                gain > CONVERGENCE_MIN_SAMPLES
                and share > CONVERGENCE_MIN_GAIN
                and (best is None or share > best[1])
            ):
                new = sample_ids(m.index[m["broken_b"] & ~m["broken_a"]])
                best = (gain, share, eps, new, len(m))
        if best is not None:
            gain, share, eps, new, n = best
            out.append(
                Finding(
                    (base,),
                    share,
                    f"{names.get(key, key)} broke {gain} more of {n} samples ({share:.0%}) than "
                    f"{names.get(base, base)} ({where({**row, 'eps': eps})}); newly broken: {listed(new)}",
                    model=str(row["model"]),
                    norm=str(row["norm"]),
                    eps=eps,
                    samples=new,
                    references=(key,),
                )
            )
    return out


def _radii(records: pd.DataFrame) -> list[float]:
    """The eps values of a cell's records (NaN for a minimum-norm cell without a radius)."""
    return list(dict.fromkeys(float(e) for e in records["eps"])) if "eps" in records.columns else [np.nan]


def _at_eps(records: pd.DataFrame, eps: float) -> pd.DataFrame:
    if "eps" not in records.columns:
        return records
    return records[records["eps"].isna()] if np.isnan(eps) else records[records["eps"] == eps]


def incomplete_optimization(frames: Frames) -> list[Finding]:
    """Cells where more than :data:`INCOMPLETE_SHARE` of the attacked (initially correct)
    samples failed with the loss still falling (records' ``incomplete_optimization``)."""
    out = []
    for key, cell in _cells_once(frames).items():
        correct = cell["correct"].astype(bool).to_numpy()
        failed = correct & ~cell["success"].astype(bool).to_numpy()
        flagged = failed & cell["incomplete_optimization"].fillna(False).astype(bool).to_numpy()
        if not correct.sum() or flagged.sum() / correct.sum() <= INCOMPLETE_SHARE:
            continue
        share = float(flagged.sum() / correct.sum())
        ids = tuple(int(i) for i in cell["sample"].to_numpy()[flagged])
        out.append(
            _cell_finding(
                frames,
                key,
                cell,
                share,
                ids,
                f"failed with the loss still falling on {share:.0%} of the attacked samples",
            )
        )
    return out


def silent_success(frames: Frames) -> list[Finding]:
    """Cells with a sample whose attack path held an adversarial point but whose returned
    point is not one (records' ``silent_success``)."""
    out = []
    for key, cell in _cells_once(frames).items():
        silent = (
            cell["correct"].astype(bool).to_numpy()
            & cell["silent_success"].fillna(False).astype(bool).to_numpy()
        )
        if silent.any():
            ids = tuple(int(i) for i in cell["sample"].to_numpy()[silent])
            text = f"passed an adversarial point and returned a non-adversarial one on {len(ids)} samples"
            out.append(_cell_finding(frames, key, cell, float(len(ids)), ids, text))
    return out


def _cells_once(frames: Frames) -> dict[str, pd.DataFrame]:
    """Each cell's records, one row per sample."""
    return cells(one_per_sample(frames.records)) if len(frames.records) else {}


def _cell_finding(
    frames: Frames, key: str, cell: pd.DataFrame, value: float, ids: tuple[int, ...], text: str
) -> Finding:
    """A finding on one cell's samples ``ids``: ``<cell label> <text> (<where>): <ids>``."""
    names = labels(frames.summary)
    ident = {c: cell[c].iloc[0] for c in present(cell, ("model", "norm", "eps", "targeted"))}
    return Finding(
        (key,),
        value,
        f"{names.get(key, key)} {text} ({where(ident)}): {listed(ids)}",
        **at(ident),
        samples=ids,
    )


def library_disagreement(frames: Frames) -> list[Finding]:
    """Pairs of libraries running one attack setting whose success agrees on less than
    :data:`MIN_AGREEMENT` of the samples (:func:`~advharness.analytics.agreement.library_agreement`),
    with its verdict."""
    if frames.records.empty:
        return []
    table = library_agreement(frames.records, frames.summary, min_agreement=MIN_AGREEMENT)
    if table.empty:
        return []
    names = labels(frames.summary)
    out = []
    for _, row in table[table["agreement"] < MIN_AGREEMENT].iterrows():
        ka, kb = str(row["cell_key_a"]), str(row["cell_key_b"])
        evidence = f", {row['evidence']}" if row["evidence"] else ""
        stronger = f"; stronger: {row['stronger']}" if row["stronger"] else ""
        out.append(
            Finding(
                (ka, kb),
                float(row["agreement"]),
                f"{names.get(ka, ka)} and {names.get(kb, kb)} agree on {row['agreement']:.0%} of "
                f"{int(row['n'])} samples ({where(row)}): {row['verdict']}{evidence}{stronger}",
                **at(row),
            )
        )
    return out
