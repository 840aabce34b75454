"""The report's sections, in page order: one explicit registry.

A section is a :class:`~advharness.reporting.report.base.Section`: a title and a builder
``build(ctx: ReportContext) -> Fragment``. To add one, write the builder in a module of this
package and add its entry here (the key is the section's anchor, ``#<key>``); the page
assembly does not change. ``write_report(..., sections=...)`` takes another mapping.
"""

from __future__ import annotations

from advharness.reporting.report.base import Section
from advharness.reporting.report.comparisons import build_agreement, build_optimality, build_worst_case
from advharness.reporting.report.curves import build_distance_cdfs, build_security_curves
from advharness.reporting.report.defenses import build_defenses
from advharness.reporting.report.examples import build_examples
from advharness.reporting.report.expectations import build_expectations
from advharness.reporting.report.flags import build_flags, build_sanity_checks
from advharness.reporting.report.head_to_head import build_head_to_head
from advharness.reporting.report.overview import build_overview, build_provenance
from advharness.reporting.report.plots import build_query_efficiency, build_time_vs_success

SECTIONS: dict[str, Section] = {
    "overview": Section("What was run", build_overview),
    "head-to-head": Section("Head-to-head", build_head_to_head),
    "published-vs-measured": Section("Published vs measured", build_expectations),
    "security-curves": Section("Security curves", build_security_curves),
    "distance-cdfs": Section("Distance CDFs (minimum-norm cells)", build_distance_cdfs),
    "optimality": Section("Optimality (AttackBench)", build_optimality),
    "agreement": Section("Agreement between libraries", build_agreement),
    "worst-case": Section("Worst case over libraries and attacks", build_worst_case),
    "defenses": Section("Defenses: worst case and detectors", build_defenses),
    "time-vs-success": Section("Time against success", build_time_vs_success),
    "query-efficiency": Section("Query efficiency (black-box cells)", build_query_efficiency),
    "examples": Section("Adversarial examples", build_examples),
    "sanity-checks": Section("Evaluation sanity checks", build_sanity_checks),
    "flags": Section("Flags, failures and unsupported cells", build_flags),
    "provenance": Section("Versions and manifest", build_provenance),
}
