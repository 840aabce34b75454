"""Assembling the report: every registered section's fragment into one self-contained HTML
page (inline CSS, figures as ``data:`` URIs, no network, no script needed) and one Markdown
file (figures as PNG files in ``figures/`` next to it); with ``latex``, each table as a
``.tex`` file in ``latex/``.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from advharness.core.atomic import atomic_write
from advharness.core.errors import HarnessError
from advharness.reporting.report.base import FIGURES_DIR, Fragment, Image, ReportContext, Section, md_escape
from advharness.reporting.run_result import RunResult

log = logging.getLogger(__name__)

HTML_NAME, MARKDOWN_NAME, LATEX_DIR = "report.html", "report.md", "latex"

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto;
  max-width: 1200px; padding: 1em 2em; color: #222; line-height: 1.4; }
h1 { border-bottom: 2px solid #444; } h2 { border-bottom: 1px solid #aaa; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; vertical-align: top; text-align: left; }
thead th { background: #eee; } table.h2h td { text-align: right; white-space: nowrap; }
table.h2h tbody th { font-weight: normal; white-space: nowrap; } .dim { color: #777; }
td.failed { color: #8a6d00; background: #fff8e1; } .warn { color: #b00020; }
table.facts td:first-child { font-weight: bold; } .scroll { overflow-x: auto; }
p.na { color: #666; font-style: italic; } .legend, ul.notes { font-size: 0.8em; color: #555; }
ul.notes { list-style: none; padding-left: 0; }
figure { margin: 0.8em 0; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.85em; color: #444; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.8em; }
nav ul { columns: 2; }
"""

#: Not needed to read the page: counts the images that decoded (``complete`` with a width)
#: into ``<body data-images-loaded="ok/total">``, which a headless browser test reads back.
CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; } }
  document.body.setAttribute("data-images-loaded", ok + "/" + imgs.length);
});
</script>"""


@dataclass
class Report:
    """A built report: the page, the Markdown, the figures and the LaTeX tables."""

    html: str
    markdown: str
    images: list[Image] = field(default_factory=list)
    latex: dict[str, str] = field(default_factory=dict)


def build_report(
    result: RunResult, results_dir: str | Path, sections: Mapping[str, Section] | None = None
) -> Report:
    """Every section's fragment (``sections``: the registry by default), assembled."""
    from advharness.reporting.report.registry import SECTIONS

    ctx = ReportContext(result, Path(results_dir))
    built: list[tuple[str, Section, Fragment]] = []
    for key, section in (SECTIONS if sections is None else sections).items():
        try:
            fragment = section.build(ctx)
        except Exception as e:
            e.add_note(f"while building the report section {key!r} ({section.title})")
            raise
        built.append((key, section, fragment))
    images: dict[str, Image] = {}
    latex: dict[str, str] = {}
    for key, _, fragment in built:
        for image in fragment.images:
            if image.name in images:
                raise ValueError(f"report section {key!r}: a second figure named {image.name!r}")
            images[image.name] = image
        for stem, tex in fragment.latex.items():
            if stem in latex:
                raise ValueError(f"report section {key!r}: a second LaTeX table named {stem!r}")
            latex[stem] = tex
    return Report(_html(ctx, built), _markdown(ctx, built), list(images.values()), latex)


def _generated() -> str:
    from advharness.reporting.results import versions

    when = datetime.now(UTC).isoformat(timespec="seconds")
    return f"generated {when} by advharness {versions()['advharness']}"


def _html(ctx: ReportContext, built: list[tuple[str, Section, Fragment]]) -> str:
    title = html.escape(f"advharness report: {ctx.name}")
    nav = "".join(f'<li><a href="#{key}">{html.escape(s.title)}</a></li>' for key, s, _ in built)
    body = "".join(
        f'<section id="{key}">\n<h2>{html.escape(s.title)}</h2>\n{f.html}</section>\n' for key, s, f in built
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{CSS}</style>\n</head>\n"
        f'<body data-images-loaded="pending">\n<h1>{title}</h1>\n'
        f'<p class="dim">{html.escape(_generated())} from {html.escape(str(ctx.results_dir))}</p>\n'
        f"<nav><ul>{nav}</ul></nav>\n{body}{CHECK_SCRIPT}\n</body>\n</html>\n"
    )


def _markdown(ctx: ReportContext, built: list[tuple[str, Section, Fragment]]) -> str:
    out = [f"# advharness report: {md_escape(ctx.name)}", "", f"*{_generated()} from {ctx.results_dir}*", ""]
    out += [f"* [{md_escape(s.title)}](#{key})" for key, s, _ in built]
    out.append("")
    for key, s, f in built:
        out += [f'<a id="{key}"></a>', "", f"## {md_escape(s.title)}", "", f.markdown.rstrip(), ""]
    return "\n".join(out)


def write_report(
    results_dir: str | Path,
    out: str | Path | None = None,
    *,
    latex: bool = False,
    sections: Mapping[str, Section] | None = None,
) -> Path:
    """Write the report of a results directory into ``out`` (default ``<results_dir>/report``):
    ``report.html`` (self-contained), ``report.md`` with ``figures/*.png``, and with
    ``latex`` the tables as ``latex/*.tex``. Returns the HTML page's path."""
    from advharness.reporting.results import read_results

    result = read_results(results_dir)  # a one-line HarnessError for a non-results directory
    target = Path(out) if out is not None else Path(results_dir) / "report"
    if target.exists() and not target.is_dir():
        raise HarnessError(f"{target} exists and is not a directory: choose another --out")
    report = build_report(result, results_dir, sections)
    figures = target / FIGURES_DIR
    names = {f"{image.name}.png" for image in report.images}
    for stale in figures.glob("*.png") if figures.is_dir() else []:
        if stale.name not in names:  # a figure of an earlier report of this directory
            stale.unlink()
    for image in report.images:
        atomic_write(figures / f"{image.name}.png", lambda p, b=image.png: p.write_bytes(b))
    if latex:
        for stem, tex in report.latex.items():
            atomic_write(target / LATEX_DIR / f"{stem}.tex", lambda p, t=tex: p.write_text(t))
    atomic_write(target / MARKDOWN_NAME, lambda p: p.write_text(report.markdown))
    atomic_write(target / HTML_NAME, lambda p: p.write_text(report.html))
    log.info("report of %s written to %s", results_dir, target)
    return target / HTML_NAME
