"""Rendering the head-to-head table: rich (terminal), plain text, Markdown, HTML, LaTeX and CSV.

Every format shows the same rows (:func:`advharness.reporting.tables.table_rows`): a compact label per
row and, per (library, framework), the success rate and the robust accuracy (at the row's
eps for a minimum-norm attack given one) in percent with their Wilson 95 % intervals
(``SR 45% [38-52]``), the median perturbation of the successes, wall time and queries per
sample; ``±`` sample sd and ``n=`` over seeds when several ran (instead of the interval).
Given the :func:`advharness.analytics.sanity_checks` table, an entry whose cells a sanity
check flagged shows ``checks [a,c]``, and the letters are listed under the table with
each check's rule, threshold and source.
"""

from __future__ import annotations

import html
import io
import math
import string
from typing import Any

import pandas as pd

from advharness.analytics.checks import CHECKS, checks_by_cell
from advharness.config.catalogue import SHORT
from advharness.reporting.tables import Cell, Row, cell_checks, head_to_head, table_rows

STATUS_SHORT = {"unsupported": "unsup.", "violation": "VIOLATION"}
LEGEND = (
    "cell: SR success rate (of initially-correct samples), RA robust accuracy (minimum-norm "
    "attacks with an eps: within it), each with its Wilson 95% interval [low-high]; median "
    "perturbation norm of the successes; attack wall "
    "time, forward+backward queries per sample (black-box: exact mean/median per attacked "
    "sample, <=budget when one is enforced); with several seeds: mean ± sd, n seeds. "
    "T: targeted. Transfer rows are crafted on the source model and judged on the row's "
    "model. Numbers in [ ] refer to the notes below, letters to the sanity checks."
)


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _fmt(v: Any, spec: str) -> str:
    return "-" if _missing(v) else format(v, spec)


def _pct(v: Any) -> str:
    """``0.45`` -> ``45``; one decimal where rounding would show a rate that is not 0 or 1
    as ``0`` or ``100``."""
    x = 100 * float(v)
    return f"{x:.1f}" if (0 < x < 0.5 or 99.5 <= x < 100) else f"{x:.0f}"


def _rate(cell: Cell, metric: str) -> str:
    """``45% [38-52]`` (Wilson 95 % interval), or ``45±3%`` (mean ± sd over seeds)."""
    v = cell.values.get(metric)
    if _missing(v):
        return "-"
    sd = cell.sd.get(metric)
    if sd is not None:
        return f"{_pct(v)}±{_pct(sd)}%"
    low, high = cell.values.get(f"{metric}_ci_low"), cell.values.get(f"{metric}_ci_high")
    interval = "" if _missing(low) or _missing(high) else f" [{_pct(low)}-{_pct(high)}]"
    return f"{_pct(v)}%{interval}"


class CheckMarks:
    """Letters for the sanity checks flagged in one table, in order of first use."""

    def __init__(self, checks: pd.DataFrame | None) -> None:
        self.flagged = checks_by_cell(checks) if checks is not None else {}
        self.letters: dict[str, str] = {}

    def marker(self, cell: Cell) -> list[str]:
        """``["checks [a,c]"]`` for an entry whose cells were flagged, else ``[]``."""
        names = cell_checks(cell, self.flagged)
        for name in names:
            i = len(self.letters)
            self.letters.setdefault(name, string.ascii_lowercase[i] if i < 26 else f"c{i}")
        return [f"checks [{','.join(self.letters[n] for n in names)}]"] if names else []

    def notes(self) -> list[str]:
        """``[a] name (severity): rule; threshold: ...; source: ...`` per letter used."""
        out = []
        for name, letter in self.letters.items():
            c = CHECKS.get(name)
            text = (
                f"{name} ({c.severity}): {c.rule}; threshold: {c.threshold}; source: {c.source}"
                if c
                else name
            )
            out.append(f"[{letter}] {text}")
        return out


def cell_lines(
    cell: Cell, notes: dict[str, int], marks: CheckMarks | None = None
) -> tuple[list[str], list[str]]:
    """The entry's text lines and its warning lines (``notes`` numbers failure reasons;
    ``marks`` letters the sanity checks that flagged the entry)."""
    checked = marks.marker(cell) if marks is not None else []
    if cell.status != "ok":
        n = notes.setdefault(f"{cell.status}: {cell.reason}", len(notes) + 1)
        return [f"{STATUS_SHORT.get(cell.status, cell.status)} [{n}]"], checked
    v = cell.values
    at_eps = v.get("kind") == "minimal" and not _missing(v.get("robust_accuracy_at_eps"))
    sr, ra = (
        ("success_rate_at_eps", "robust_accuracy_at_eps") if at_eps else ("success_rate", "robust_accuracy")
    )
    lines = [
        f"SR {_rate(cell, sr)}",
        f"RA {_rate(cell, ra)}",
        f"med {_fmt(v.get('median_norm'), '.3g')}",
        f"{_fmt(v.get('time_s'), '.2f')}s {_queries(v)}",
    ]
    if cell.n_seeds > 1 or cell.n_failed_seeds:
        failed = f", {cell.n_failed_seeds} failed" if cell.n_failed_seeds else ""
        lines.append(f"n={cell.n_seeds}{failed}")
    return lines, _flags(v) + checked


def _queries(v: dict[str, Any]) -> str:
    """``12q`` (mean per sample); black-box cells: ``mean/median q`` and ``<=budget``."""
    median = v.get("queries_median")
    if v.get("threat_model") == "transfer":
        trained: Any = v.get("substitute_queries")
        return "0q" + ("" if _missing(trained) else f" (+{int(trained)} to train)")
    if _missing(median):
        return f"{_fmt(v.get('queries_per_sample'), '.0f')}q"
    text = f"{_fmt(v.get('queries_mean'), '.0f')}/{_fmt(median, '.0f')}q"
    budget: Any = v.get("budget")
    return text + ("" if _missing(budget) else f" <={int(budget)}")


def _flags(v: dict[str, Any]) -> list[str]:
    flags = [
        f"{int(v[col])} {name}"
        for col, name in (
            ("n_eps_violations", "eps-viol"),
            ("n_box_violations", "box-viol"),
            ("n_degenerate", "degen."),
            ("n_nonfinite", "nan"),
            ("low_clean_accuracy", "low clean acc."),
        )
        if v.get(col)
    ]
    if v.get("beats_white_box", False):
        flags.append("beats white-box: masking?")
    return [", ".join(flags)] if flags else []


def _columns(summary: pd.DataFrame) -> list[tuple[str, str]]:
    return list(dict.fromkeys(zip(summary["library"], summary["framework"], strict=True)))


def render(
    summary: pd.DataFrame,
    title: str = "head-to-head",
    per_seed: bool = False,
    checks: pd.DataFrame | None = None,
) -> Any:
    """A rich renderable: the table plus numbered footnotes for unsupported/error cells and
    lettered ones for the sanity ``checks`` that flagged a cell."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    rows = table_rows(summary, per_seed)
    table = Table(title=title, show_lines=True)
    groups = _columns(summary) if rows else []
    table.add_column("attack", no_wrap=True)
    for lib, fw in groups:
        table.add_column(f"{lib}\n{SHORT.get(fw, fw)}", justify="right")
    notes: dict[str, int] = {}
    marks = CheckMarks(checks)
    for row in rows:
        first, *rest = row.label.split("\n")
        label = escape(first) + "".join(f"\n[dim]{escape(r)}[/dim]" for r in rest)
        cells = []
        for g in groups:
            cell = row.cells.get(g)
            if cell is None:
                cells.append("")
                continue
            lines, warn = cell_lines(cell, notes, marks)
            text = "\n".join(escape(x) for x in lines)
            if cell.status != "ok":
                text = f"[yellow]{text}[/yellow]"
            cells.append(text + "".join(f"\n[red]{escape(w)}[/red]" for w in warn))
        table.add_row(label, *cells)
    foot = Text("\n".join([*(f"[{n}] {text}" for text, n in notes.items()), *marks.notes()]))
    return Group(table, Text(LEGEND, style="dim"), foot)


def render_text(
    summary: pd.DataFrame,
    title: str = "head-to-head",
    width: int = 160,
    per_seed: bool = False,
    checks: pd.DataFrame | None = None,
) -> str:
    """The rendered table as plain text (for logs and tests)."""
    from rich.console import Console

    console = Console(width=width, record=True, file=io.StringIO())
    console.print(render(summary, title, per_seed, checks))
    return console.export_text()


def _grid(
    summary: pd.DataFrame,
    per_seed: bool,
    checks: pd.DataFrame | None = None,
    rows: list[Row] | None = None,
) -> tuple[list[str], list[list[list[str]]], list[str]]:
    """Header, rows of text lines per entry, and the footnotes, for the plain-text formats
    (``rows``: :func:`~advharness.reporting.tables.table_rows` of ``summary`` if already built)."""
    rows = table_rows(summary, per_seed) if rows is None else rows
    groups = _columns(summary) if rows else []
    notes: dict[str, int] = {}
    marks = CheckMarks(checks)
    body = []
    for row in rows:
        entries = [row.label.split("\n")]
        for g in groups:
            cell = row.cells.get(g)
            if cell is None:
                entries.append([])
            else:
                lines, warn = cell_lines(cell, notes, marks)
                entries.append(lines + warn)
        body.append(entries)
    foot = [*(f"[{n}] {text}" for text, n in notes.items()), *marks.notes()]
    return ["attack", *[f"{lib} {SHORT.get(fw, fw)}" for lib, fw in groups]], body, foot


def to_markdown(
    summary: pd.DataFrame,
    per_seed: bool = False,
    checks: pd.DataFrame | None = None,
    *,
    rows: list[Row] | None = None,
) -> str:
    """A GitHub-flavoured Markdown table (lines within an entry joined by ``<br>``);
    ``checks``: :func:`~advharness.analytics.checks.sanity_checks` to mark; ``rows``:
    :func:`~advharness.reporting.tables.table_rows` of ``summary`` if already built."""
    header, body, notes = _grid(summary, per_seed, checks, rows)

    def esc(t: str) -> str:
        return t.replace("|", "\\|")

    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join("<br>".join(esc(x) for x in e) for e in entries) + " |" for entries in body]
    out += [""] + [esc(text) for text in notes]
    return "\n".join(out).rstrip() + "\n"


def to_html(
    summary: pd.DataFrame,
    per_seed: bool = False,
    checks: pd.DataFrame | None = None,
    *,
    rows: list[Row] | None = None,
) -> str:
    """An HTML ``<table class="h2h">`` (lines within an entry joined by ``<br>``; failed entries
    in ``class="failed"``, warnings in ``class="warn"``) and the numbered notes and the
    sanity checks' footnotes after it; ``checks`` and ``rows`` as for :func:`to_markdown`."""
    rows = table_rows(summary, per_seed) if rows is None else rows
    groups = _columns(summary) if rows else []
    notes: dict[str, int] = {}
    marks = CheckMarks(checks)
    head = "".join(f"<th>{html.escape(lib)}<br>{html.escape(SHORT.get(fw, fw))}</th>" for lib, fw in groups)
    out = ['<table class="h2h">', f"<thead><tr><th>attack</th>{head}</tr></thead>", "<tbody>"]
    for row in rows:
        first, *rest = row.label.split("\n")
        label = html.escape(first) + "".join(f'<br><span class="dim">{html.escape(r)}</span>' for r in rest)
        tds = [f"<th>{label}</th>"]
        for g in groups:
            cell = row.cells.get(g)
            if cell is None:
                tds.append("<td></td>")
                continue
            lines, warn = cell_lines(cell, notes, marks)
            text = "<br>".join(html.escape(x) for x in lines)
            text += "".join(f'<br><span class="warn">{html.escape(w)}</span>' for w in warn)
            tds.append(f'<td class="failed">{text}</td>' if cell.status != "ok" else f"<td>{text}</td>")
        out.append("<tr>" + "".join(tds) + "</tr>")
    out += ["</tbody>", "</table>"]
    foot = [*(f"[{n}] {text}" for text, n in notes.items()), *marks.notes()]
    if foot:
        items = "".join(f"<li>{html.escape(text)}</li>" for text in foot)
        out.append(f'<ul class="notes">{items}</ul>')
    return "\n".join(out) + "\n"


_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\^{}",
    "±": r"$\pm$",
    "<=": r"$\le$",
}


def latex_escape(text: str) -> str:
    """Plain text for LaTeX: special characters escaped, ``±`` and ``<=`` as math."""
    out = text.replace("\\", "\x00")
    for k, v in _LATEX.items():
        if k != "\\":
            out = out.replace(k, v)
    return out.replace("\x00", _LATEX["\\"])


def to_latex(
    summary: pd.DataFrame,
    per_seed: bool = False,
    checks: pd.DataFrame | None = None,
    *,
    rows: list[Row] | None = None,
) -> str:
    """A LaTeX ``tabular`` (booktabs rules; entries as ``\\shortstack``), notes after it;
    ``checks`` and ``rows`` as for :func:`to_markdown`."""
    header, body, notes = _grid(summary, per_seed, checks, rows)

    def entry(lines: list[str]) -> str:
        if len(lines) <= 1:
            return latex_escape(lines[0]) if lines else ""
        return r"\shortstack{" + r" \\ ".join(latex_escape(x) for x in lines) + "}"

    out = [
        r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in header) + r" \\",
        r"\midrule",
    ]
    out += [" & ".join(entry(e) for e in entries) + r" \\" for entries in body]
    out += [r"\bottomrule", r"\end{tabular}"]
    out += [f"% {text}" for text in notes]
    return "\n".join(out) + "\n"


def to_csv(summary: pd.DataFrame, per_seed: bool = False, checks: pd.DataFrame | None = None) -> str:
    """The head-to-head DataFrame as CSV, columns named ``library/framework/metric`` (with
    ``checks``: a ``checks`` metric naming the sanity checks that flagged each entry)."""
    table = head_to_head(summary, per_seed, checks)
    if table.empty:
        return ""
    flat = table.copy()
    flat.columns = ["/".join(map(str, c)) for c in flat.columns]
    return flat.reset_index().to_csv(index=False)


def sanity_list(checks: pd.DataFrame | None) -> str:
    """The flags of a :func:`advharness.analytics.sanity_checks` table as a list, one line
    each (``[error] check: message``) under a ``sanity checks`` heading; empty when none."""
    if checks is None or checks.empty:
        return ""
    lines = [f"sanity checks ({len(checks)} flags; rules: docs/analytics.md#sanity-checks):"]
    lines += [f"  [{row['severity']}] {row['check']}: {row['message']}" for _, row in checks.iterrows()]
    return "\n".join(lines)
