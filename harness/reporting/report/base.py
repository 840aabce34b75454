"""The report's building blocks: what a section builder gets (:class:`ReportContext`), what
it returns (:class:`Fragment`), the registry entry (:class:`Section`), and small HTML and
Markdown helpers every section uses alike.

A builder is ``build(ctx: ReportContext) -> Fragment``: the same content as an HTML fragment
and as Markdown, the figures both refer to (:class:`Image`: inline in the HTML page as a
``data:`` URI, a PNG file ``figures/<name>.png`` next to the Markdown file), and any tables
as LaTeX (written with ``--latex``). A builder whose data are absent returns
:meth:`Fragment.unavailable` with the reason; it does not raise for that.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from advharness.reporting.render import latex_escape
from advharness.reporting.run_result import RunResult
from advharness.reporting.tables import row_labels

#: The Markdown file refers to figures in this folder, next to it.
FIGURES_DIR = "figures"


@dataclass(frozen=True)
class Image:
    """One PNG figure: ``name`` is its file stem (unique within a report)."""

    name: str
    png: bytes
    alt: str

    def html(self) -> str:
        data = base64.b64encode(self.png).decode("ascii")
        return f'<img src="data:image/png;base64,{data}" alt="{html.escape(self.alt)}">'

    def markdown(self) -> str:
        return f"![{md_escape(self.alt)}]({FIGURES_DIR}/{self.name}.png)"


@dataclass
class Fragment:
    """A section's content in both formats; ``latex``: file stem -> LaTeX source."""

    html: str
    markdown: str
    images: list[Image] = field(default_factory=list)
    latex: dict[str, str] = field(default_factory=dict)
    available: bool = True

    @classmethod
    def unavailable(cls, why: str) -> Fragment:
        """The section has no data to show: ``not available: <why>``."""
        return cls(
            f'<p class="na">not available: {html.escape(why)}</p>\n',
            f"*not available: {md_escape(why)}*\n",
            available=False,
        )

    def extend(self, other: Fragment) -> None:
        """Append ``other``'s content (images and LaTeX too)."""
        self.html += other.html
        self.markdown += other.markdown
        self.images += other.images
        self.latex.update(other.latex)


@dataclass(frozen=True)
class Section:
    """One registry entry: a heading and the builder of its content."""

    title: str
    build: Callable[[ReportContext], Fragment]


class ReportContext:
    """What every section builder gets: the loaded results and derived views, computed once."""

    def __init__(self, result: RunResult, results_dir: Path) -> None:
        self.result = result
        self.results_dir = Path(results_dir)

    @property
    def summary(self) -> pd.DataFrame:
        return self.result.summary

    @property
    def records(self) -> pd.DataFrame:
        return self.result.records

    @property
    def manifest(self) -> dict[str, Any]:
        return self.result.manifest

    @property
    def name(self) -> str:
        """The experiment's name (the directory's when there is no manifest)."""
        return str(self.manifest.get("experiment", {}).get("name") or self.results_dir.name)

    @cached_property
    def samples(self) -> pd.DataFrame:
        """The records with each cell's samples once (a minimum-norm cell reported at several
        radii repeats them; see docs/results.md)."""
        if self.records.empty:
            return self.records
        return self.records.drop_duplicates(["cell_key", "sample"]).reset_index(drop=True)

    @cached_property
    def checks(self) -> pd.DataFrame:
        """The evaluation sanity checks that fire on these results, with the models' probes
        (:func:`advharness.analytics.sanity_checks`)."""
        from advharness.analytics import sanity_checks

        return sanity_checks(self.summary, self.records, getattr(self.result, "probes", None))

    @cached_property
    def labels(self) -> pd.Series:
        """Each summary row's head-to-head row label, on the summary's index."""
        return row_labels(self.summary)

    @cached_property
    def key_labels(self) -> dict[str, str]:
        """``cell_key`` -> the label of the first row it appears in; a minimum-norm cell's
        without its reporting radius (the cell is the same at every radius)."""
        out: dict[str, str] = {}
        kinds = self.summary["kind"] if "kind" in self.summary else [None] * len(self.summary)
        for key, label, kind in zip(self.summary["cell_key"].astype(str), self.labels, kinds, strict=True):
            text = str(label)
            out.setdefault(key, re.sub(r" eps=\S+", "", text, count=1) if kind == "minimal" else text)
        return out

    @cached_property
    def libraries(self) -> list[str]:
        """Libraries in first-appearance order (their colours in every plot)."""
        return list(dict.fromkeys(self.summary["library"].astype(str))) if len(self.summary) else []


def md_escape(text: str) -> str:
    """Text for a Markdown table cell or paragraph: Markdown's own characters escaped,
    newlines as ``<br>``."""
    out = str(text).replace("\\", "\\\\")
    for c in "|[]*_<`":
        out = out.replace(c, "\\" + c)
    return out.replace("\n", "<br>")


def fmt(v: Any) -> str:
    """A value for a table: floats to 4 significant digits, missing as ``-``."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], css: str = "", latex: str | None = None
) -> Fragment:
    """A simple table in both formats (values through :func:`fmt`); ``latex``: also as a
    LaTeX ``tabular`` under that file stem."""
    cls = f' class="{css}"' if css else ""
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    out_html = f"<table{cls}><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>\n"
    md = ["| " + " | ".join(md_escape(h) for h in header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(md_escape(fmt(v)) for v in row) + " |" for row in rows]
    tex = {} if latex is None else {latex: latex_tabular(header, rows)}
    return Fragment(out_html, "\n".join(md) + "\n\n", latex=tex)


def latex_tabular(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A booktabs ``tabular`` (first column left, the others right-aligned)."""
    out = [
        r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in header) + r" \\",
        r"\midrule",
    ]
    out += [" & ".join(latex_escape(fmt(v)) for v in row) + r" \\" for row in rows]
    return "\n".join([*out, r"\bottomrule", r"\end{tabular}"]) + "\n"


def paragraph(text: str, css: str = "") -> Fragment:
    """Plain text as a paragraph in both formats."""
    cls = f' class="{css}"' if css else ""
    return Fragment(f"<p{cls}>{html.escape(text)}</p>\n", md_escape(text) + "\n\n")


def heading(text: str, level: int = 3) -> Fragment:
    """A sub-heading inside a section (sections get ``<h2>``/``##`` from the page)."""
    return Fragment(f"<h{level}>{html.escape(text)}</h{level}>\n", f"{'#' * level} {md_escape(text)}\n\n")


def figure(image: Image, caption: str) -> Fragment:
    """A figure with its caption, in both formats."""
    return Fragment(
        f"<figure>{image.html()}<figcaption>{html.escape(caption)}</figcaption></figure>\n",
        f"{image.markdown()}\n\n*{md_escape(caption)}*\n\n",
        images=[image],
    )


def details(summary: str, body_html: str, body_markdown: str) -> Fragment:
    """Collapsed content (``<details>``; GitHub renders it in Markdown too)."""
    s = html.escape(summary)
    return Fragment(
        f"<details><summary>{s}</summary>\n{body_html}</details>\n",
        f"<details><summary>{s}</summary>\n\n{body_markdown}\n</details>\n\n",
    )
