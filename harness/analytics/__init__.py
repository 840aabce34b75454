"""Analytics: pure functions over a run's ``summary`` and ``records`` DataFrames (as
:func:`advharness.read_results` and :class:`advharness.RunResult` give them), each returning
a new DataFrame (or, for the statistical tests on arrays, a dict); the evaluation sanity
checks (:func:`sanity_checks`) flag the rows of an unsound evaluation. See docs/analytics.md for
every definition, its formula and source, and the output columns.
"""

from __future__ import annotations

from advharness.analytics.agreement import (
    compare_runs,
    library_agreement,
    max_abs_difference,
    mcnemar,
    paired_distance_test,
    rank_biserial,
)
from advharness.analytics.checks import CHECKS, Check, checks_by_cell, sanity_checks
from advharness.analytics.compare import compare_results
from advharness.analytics.convergence import convergence_changes
from advharness.analytics.curves import security_curves
from advharness.analytics.defenses import defense_worst_case, detector_roc
from advharness.analytics.distances import distance_cdf, per_sample_distances, step_radii
from advharness.analytics.expectations import check_expectations
from advharness.analytics.frames import one_per_sample, with_settings
from advharness.analytics.intervals import (
    bootstrap_interval,
    compare_rates,
    rate_intervals,
    seed_spread,
    summary_intervals,
    two_proportion_test,
    wilson_interval,
)
from advharness.analytics.optimality import (
    best_distances,
    global_optimality,
    local_optimality,
    optimality_of,
    step_area,
)
from advharness.analytics.worstcase import (
    best_implementation,
    complementarity,
    ensemble_robust_accuracy,
    pairwise_complementarity,
    worst_case,
    worst_case_samples,
)

__all__ = [
    "CHECKS",
    "Check",
    "best_distances",
    "best_implementation",
    "bootstrap_interval",
    "check_expectations",
    "checks_by_cell",
    "compare_rates",
    "compare_results",
    "compare_runs",
    "complementarity",
    "convergence_changes",
    "defense_worst_case",
    "detector_roc",
    "distance_cdf",
    "ensemble_robust_accuracy",
    "global_optimality",
    "library_agreement",
    "local_optimality",
    "max_abs_difference",
    "mcnemar",
    "one_per_sample",
    "optimality_of",
    "paired_distance_test",
    "pairwise_complementarity",
    "per_sample_distances",
    "rank_biserial",
    "rate_intervals",
    "sanity_checks",
    "security_curves",
    "seed_spread",
    "step_area",
    "step_radii",
    "summary_intervals",
    "two_proportion_test",
    "wilson_interval",
    "with_settings",
    "worst_case",
    "worst_case_samples",
]
