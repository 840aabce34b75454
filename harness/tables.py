"""The head-to-head table: one row per (attack, norm, eps), one column group per
(library, framework), and its rendering for the terminal."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from harness.catalogue import SHORT

METRICS = ("success_rate", "robust_accuracy", "median_norm", "time_s", "queries_per_sample",
           "queries_mean", "queries_median", "budget", "violation")
ROW_KEYS = ["family", "attack", "norm", "eps", "targeted", "threat_model", "source_model"]


def head_to_head(summary: pd.DataFrame) -> pd.DataFrame:
    """Pivot per-cell summaries into the comparison table.

    Index: (family, attack, norm, eps, targeted) - ``family`` is the model recipe, so the
    PyTorch and Keras versions of one model share a row. Columns: (library, framework,
    metric) with the metrics in :data:`METRICS` plus ``status``.
    """
    if summary.empty:
        return pd.DataFrame()
    s = _with_threat_model(summary)
    s["eps"] = s["eps"].astype(object).where(s["eps"].notna(), "-")
    for m in METRICS:
        if m not in s:
            s[m] = float("nan")
    long = s.melt(id_vars=[*ROW_KEYS, "library", "framework"],
                  value_vars=[*METRICS, "status"], var_name="metric")
    keys = [*ROW_KEYS, "library", "framework", "metric"]
    long = long.drop_duplicates(subset=keys)  # one model per (family, framework)
    table = long.set_index(keys)["value"].unstack(["library", "framework", "metric"])
    order = {m: i for i, m in enumerate([*METRICS, "status"])}
    return table.reindex(sorted(table.columns, key=lambda c: (c[0], c[1], order[c[2]])), axis=1)


def _with_threat_model(summary: pd.DataFrame) -> pd.DataFrame:
    """A copy with ``threat_model`` and ``source_model`` columns (older results lack them:
    white-box, no source)."""
    s = summary.copy()
    if "threat_model" not in s:
        s["threat_model"] = "white-box"
    s["source_model"] = s["source_model"].fillna("-") if "source_model" in s else "-"
    s["violation"] = s["reason"].where(s["status"] == "violation", "")
    return s


STATUS_SHORT = {"unsupported": "unsup.", "violation": "VIOLATION"}


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _fmt(v: Any, spec: str) -> str:
    return "-" if _missing(v) else format(v, spec)


def render(summary: pd.DataFrame, title: str = "head-to-head") -> Any:
    """A rich renderable: the table plus numbered footnotes for unsupported/error cells."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, show_lines=True)
    groups = list(dict.fromkeys(zip(summary["library"], summary["framework"], strict=True)))
    table.add_column("attack", no_wrap=True)
    for lib, fw in groups:
        table.add_column(f"{lib}\n{SHORT.get(fw, fw)}", justify="right")
    notes: dict[str, int] = {}
    s = _with_threat_model(summary)
    s["eps"] = s["eps"].astype(object).where(s["eps"].notna(), None)
    for key, rows in s.groupby(ROW_KEYS, sort=False, dropna=False):
        family, attack, norm, eps, targeted, threat, source = key
        label = f"{attack} {norm}" + ("" if _missing(eps) else f" eps={eps:g}")
        label += " T" if targeted else ""
        label += {"white-box": "", "transfer": f" (transfer from {source})"}.get(
            threat, f" ({threat})")
        label += f"\n[dim]{family}[/dim]" if s["family"].nunique() > 1 else ""
        cells = []
        by = {(r["library"], r["framework"]): r for _, r in rows.iterrows()}
        for g in groups:
            r = by.get(g)
            if r is None:
                cells.append("")
            elif r["status"] != "ok":
                n = notes.setdefault(f"{r['status']}: {r['reason']}", len(notes) + 1)
                cells.append(f"[yellow]{STATUS_SHORT.get(r['status'], r['status'])}[/yellow] [{n}]")
            else:
                cells.append(
                    f"{_fmt(r['success_rate'], '.2f')} | {_fmt(r['robust_accuracy'], '.2f')}\n"
                    f"med {_fmt(r['median_norm'], '.3g')}\n"
                    f"{_fmt(r['time_s'], '.2f')}s {_queries(r)}" + _flags(r)
                )
        table.add_row(label, *cells)
    legend = Text(
        "cell: success rate (of initially-correct samples) | robust accuracy; median "
        "perturbation norm of the successes; attack wall time, forward+backward queries per "
        "sample (black-box: exact mean/median per attacked sample, <=budget when one is "
        "enforced). T: targeted. Transfer rows are crafted on the source model and judged on "
        "the row's model. Numbers in [ ] refer to the notes below.", style="dim")
    foot = Text("\n".join(f"[{n}] {text}" for text, n in notes.items()))
    return Group(table, legend, foot)


def _queries(r: pd.Series) -> str:
    """``12q`` (mean per sample); black-box cells: ``mean/median q`` and ``<=budget``."""
    median = r.get("queries_median")
    trained = r.get("substitute_queries")
    if r.get("threat_model") == "transfer":
        return "0q" + ("" if _missing(trained) else f" (+{int(trained)} to train)")
    if _missing(median):
        return f"{_fmt(r['queries_per_sample'], '.0f')}q"
    text = f"{_fmt(r['queries_mean'], '.0f')}/{_fmt(median, '.0f')}q"
    budget = r.get("budget")
    return text + ("" if _missing(budget) else f" <={int(budget)}")


def _flags(r: pd.Series) -> str:
    flags = [f"{int(r[col])} {name}" for col, name in (
        ("n_eps_violations", "eps-viol"), ("n_box_violations", "box-viol"),
        ("n_degenerate", "degen."), ("n_nonfinite", "nan")) if r.get(col, 0)]
    if r.get("beats_white_box", False):
        flags.append("beats white-box: masking?")
    return ("\n[red]" + ", ".join(flags) + "[/red]") if flags else ""


def render_text(summary: pd.DataFrame, title: str = "head-to-head", width: int = 160) -> str:
    """The rendered table as plain text (for logs and tests)."""
    import io

    from rich.console import Console

    console = Console(width=width, record=True, file=io.StringIO())
    console.print(render(summary, title))
    return console.export_text()
