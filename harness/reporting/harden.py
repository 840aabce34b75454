"""The before/after table of a hardening run: one column per model (the undefended ones,
then each defense in round order), one row per attack and library and per measure.

Each attack row shows the success rate within eps among the correctly classified samples,
with its Wilson 95 % interval (``43% [31-56]``). Rows of adaptive attacks (run through a
defense's BPDA / EOT surrogate) and of transfer attacks say so. Below them: the per-sample
worst case of each category and over all of them
(:func:`advharness.analytics.defenses.defense_worst_case`), the worst case's robust
accuracy, a detector's detection and false-positive rates. Above them: the clean accuracy,
its cost against the undefended model, the training time and the cost of the
preprocessing per input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from advharness.analytics.defenses import CATEGORIES
from advharness.reporting.tables import row_labels


def _pct(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * float(v):.0f}%"


def _rate(row: pd.Series) -> str:
    minimal_without_eps = pd.isna(row.get("eps"))
    rate = row["success_rate"] if minimal_without_eps else row["success_rate_at_eps"]
    base = "success_rate" if minimal_without_eps else "success_rate_at_eps"
    low, high = row.get(f"{base}_ci_low"), row.get(f"{base}_ci_high")
    if rate is None or pd.isna(rate):
        return "n/a"
    if low is None or pd.isna(low) or high is None or pd.isna(high):
        return _pct(rate)
    return f"{_pct(rate)} [{100 * float(low):.0f}-{100 * float(high):.0f}]"


def _model_info(manifest: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(m.get("name")): m for m in manifest.get("models", [])}


def before_after(
    summary: pd.DataFrame,
    worst: pd.DataFrame,
    models: Sequence[str],
    manifest: Mapping[str, Any] | None = None,
    undefended: Mapping[str, str | None] | None = None,
) -> pd.DataFrame:
    """The table (see the module docstring); ``models``: its columns in order;
    ``undefended``: each defense's undefended model (for the clean-accuracy cost)."""
    info = _model_info(manifest or {})
    undefended = undefended or {}
    s = summary.copy()
    if "defended_model" not in s.columns:
        s["defended_model"] = s["model"]
    s["defended_model"] = s["defended_model"].where(s["defended_model"].astype(str) != "", s["model"])
    s = s[s["defended_model"].isin(models)]
    table: dict[str, dict[str, str]] = {}

    def put(row: str, model: str, value: str) -> None:
        table.setdefault(row, {})[model] = value

    clean: dict[str, float] = {}
    for m in models:
        acc = s.loc[(s["model"] == m) & s["clean_accuracy"].notna(), "clean_accuracy"]
        if len(acc):
            clean[m] = float(acc.iloc[0])
            put("clean accuracy", m, _pct(clean[m]))
    for m in models:
        base = undefended.get(m)
        if base is not None and m in clean and base in clean:
            put("clean-accuracy cost (points)", m, f"{100 * (clean[base] - clean[m]):+.1f}")
        entry = info.get(m, {})
        defense = entry.get("defense") or {}
        train = defense.get("train_time_s", entry.get("train_time_s"))
        if train is not None:
            put("training time (s)", m, f"{float(train):.1f}")
        per_input = defense.get("seconds_per_input")
        if per_input is not None:
            put("forward time (ms / input)", m, f"{1000 * float(per_input):.3f}")
    ok = s[s["status"] == "ok"]
    labels = row_labels(ok).tolist()
    for n, (_, row) in enumerate(ok.iterrows()):
        label = f"{labels[n]} [{row['library']}]"
        adaptive = str(row.get("adaptive") or "")
        if adaptive:
            label += f" via {adaptive}"
        put(label, str(row["defended_model"]), _rate(row))
    if not worst.empty:
        mine = worst[worst["defended_model"].isin(models)]
        settings = mine.assign(
            setting=[
                f"{w['norm']} eps={float(w['eps']):g}" + (" T" if bool(w["targeted"]) else "")
                for _, w in mine.iterrows()
            ]
        )
        for setting, rows in settings.groupby("setting", sort=False):  # one block per setting
            for cat in CATEGORIES:
                for _, w in rows.iterrows():
                    if int(w[f"n_cells_{cat}"]):
                        put(
                            f"worst case, {cat} ({setting})",
                            str(w["defended_model"]),
                            _pct(w[f"{cat}_success_rate"]),
                        )
            for _, w in rows.iterrows():
                put(
                    f"worst case over the pool ({setting})",
                    str(w["defended_model"]),
                    _pct(w["worst_case_success_rate"]),
                )
            for _, w in rows.iterrows():
                low, high = 100 * w["ci_low"], 100 * w["ci_high"]
                robust = f"{_pct(w['worst_case_robust_accuracy'])} [{low:.0f}-{high:.0f}]"
                put(f"robust accuracy, worst case ({setting})", str(w["defended_model"]), robust)
    if "detection_rate" in s.columns:
        for m in models:
            rows = s[(s["model"] == m) & s["detection_rate"].notna()]
            if len(rows):
                put("detection rate (mean over cells)", m, _pct(rows["detection_rate"].mean()))
                put("false-positive rate (clean)", m, _pct(rows["false_positive_rate"].iloc[0]))
    out = pd.DataFrame.from_dict(table, orient="index").reindex(columns=list(models)).fillna("")
    out.index.name = "measure"
    return out
