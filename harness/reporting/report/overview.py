"""Sections about the run itself: what was run (experiment, data, models, attacks,
libraries, seeds, cells) and its provenance (versions, the manifest)."""

from __future__ import annotations

import html
import json
from typing import Any

import pandas as pd

from advharness.reporting.report.base import Fragment, ReportContext, details, fmt, heading, table

#: Manifest fields shown in the provenance table (the whole manifest follows, collapsed).
RUN_FIELDS = (
    "created",
    "platform",
    "backend",
    "command",
    "overrides",
    "wall_time_s",
    "cells",
    "cells_run_now",
    "cells_stored",
    "cells_superseded",
)


def build_overview(ctx: ReportContext) -> Fragment:
    """Experiment, data, seeds, cell counts, and tables of models, libraries and attacks."""
    s = ctx.summary
    if s.empty:
        return Fragment.unavailable("the results directory holds no cells")
    m = ctx.manifest
    data = {**m.get("experiment", {}).get("data", {}), **m.get("data", {})}
    statuses = s.drop_duplicates("cell_key")["status"].value_counts()
    facts: list[tuple[str, Any]] = [
        ("experiment", ctx.name),
        ("results directory", str(ctx.results_dir)),
        ("created", m.get("created", "-")),
        (
            "data",
            f"{data['dataset']} ({data.get('split', '?')} split, offset {data.get('offset', 0)})"
            if "dataset" in data
            else "- (no manifest)",
        ),
        ("samples per cell (n)", ", ".join(str(v) for v in sorted(s["n"].dropna().unique()))),
        ("data sha256", ", ".join(str(v)[:16] for v in s["data_sha256"].dropna().unique())),
        ("seeds", ", ".join(str(v) for v in sorted(s["run_seed"].dropna().unique()))),
        ("cells", f"{s['cell_key'].nunique()} ({', '.join(f'{k} {v}' for k, v in statuses.items())})"),
        ("table rows", str(len(s))),
    ]
    if ctx.result.superseded:
        facts.append(("superseded cells (left out)", str(ctx.result.superseded)))
    out = table(["", ""], facts, css="facts")
    out.extend(heading("Models"))
    out.extend(_models(ctx))
    out.extend(heading("Libraries"))
    libs = s.groupby("library", sort=False).agg(
        version=("library_version", lambda v: ", ".join(sorted({str(x) for x in v.dropna()}))),
        frameworks=("framework", lambda v: ", ".join(dict.fromkeys(v.astype(str)))),
        cells=("cell_key", "nunique"),
        ok=("status", lambda v: int((v == "ok").sum())),
    )
    out.extend(
        table(["library", "version", "frameworks", "cells", "ok rows"], libs.reset_index().values.tolist())
    )
    out.extend(heading("Attacks"))
    out.extend(_attacks(s))
    return out


def _models(ctx: ReportContext) -> Fragment:
    described = ctx.manifest.get("models") or []
    if described:
        rows = [
            (
                d.get("name"),
                d.get("framework"),
                d.get("family"),
                "x".join(str(v) for v in d.get("input_shape", [])),
                d.get("layout"),
                d.get("bounds"),
                d.get("test_accuracy"),
            )
            for d in described
        ]
        header = ["model", "framework", "family", "input shape", "layout", "bounds", "test accuracy"]
        return table(header, rows)
    s = ctx.summary
    cols = [c for c in ("model", "framework", "family", "bounds_low", "bounds_high") if c in s]
    return table(cols, s[cols].drop_duplicates().values.tolist())


def _attacks(s: pd.DataFrame) -> Fragment:
    keys = [c for c in ("attack", "norm", "kind", "threat_model", "targeted") if c in s]
    eps = pd.to_numeric(s["eps"], errors="coerce") if "eps" in s else pd.Series(float("nan"), index=s.index)
    grouped = s.assign(eps=eps).groupby(keys, sort=False, dropna=False)
    rows = [
        (
            *k,
            ", ".join(f"{e:g}" for e in sorted(g["eps"].dropna().unique())) or "-",
            g["spec"].nunique() if "spec" in g else "-",
            g["cell_key"].nunique(),
        )
        for k, g in grouped
    ]
    return table([*keys, "eps", "specs", "cells"], rows)


def build_provenance(ctx: ReportContext) -> Fragment:
    """Versions of everything, the run's facts from the manifest, and the manifest itself."""
    m = ctx.manifest
    if not m:
        return Fragment.unavailable(f"no manifest.json in {ctx.results_dir}")
    out = Fragment("", "")
    versions = m.get("versions") or {}
    out.extend(heading("Versions"))
    out.extend(
        table(["package", "version"], sorted(versions.items()))
        if versions
        else Fragment.unavailable("the manifest lists no versions")
    )
    out.extend(heading("Run"))
    git = m.get("git")
    rows: list[tuple[str, Any]] = [(k, _text(m[k])) for k in RUN_FIELDS if k in m]
    rows.append(("git", "-" if not git else f"{git.get('commit')}{' (dirty)' if git.get('dirty') else ''}"))
    out.extend(table(["", ""], rows, css="facts"))
    text = json.dumps(m, indent=2, sort_keys=True, default=str)
    out.extend(
        details(
            "manifest.json",
            f"<pre>{html.escape(text)}</pre>\n",
            f"```json\n{text}\n```\n",
        )
    )
    return out


def _text(v: Any) -> str:
    if isinstance(v, list | dict):
        return json.dumps(v, default=str)
    return fmt(v)
