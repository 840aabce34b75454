"""``advharness report``: one self-contained HTML page and a Markdown file per results
directory, assembled from the sections of :data:`~advharness.reporting.report.registry.SECTIONS`
(see docs/report.md)."""

from advharness.reporting.report.base import Fragment, ReportContext, Section
from advharness.reporting.report.page import build_report, write_report
from advharness.reporting.report.registry import SECTIONS

__all__ = ["SECTIONS", "Fragment", "ReportContext", "Section", "build_report", "write_report"]
