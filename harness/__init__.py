"""advharness: one refereed interface over ART, Foolbox and CleverHans attacks.

Python API (imports are lazy, so ``import advharness`` stays cheap)::

    from advharness import run_attacks, run_experiment, load_experiment, read_results
    from advharness import wrap_model, load_dataset, load_recipe, AttackSpec, write_report
    from advharness import harden  # attack -> defend -> re-attack (docs/defenses.md)

Analytics over the results (intervals, security curves, optimality, worst case, agreement
between libraries): ``advharness.analytics``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {
    "AttackSpec": "advharness.config.spec",
    "Experiment": "advharness.config.experiment",
    "HarnessError": "advharness.core.errors",
    "RunResult": "advharness.reporting.run_result",
    "harden": "advharness.execution.harden",
    "head_to_head": "advharness.reporting.tables",
    "load_dataset": "advharness.zoo.data",
    "load_experiment": "advharness.config.experiment",
    "load_recipe": "advharness.zoo.recipes",
    "read_adversarials": "advharness.reporting.results",
    "read_results": "advharness.reporting.results",
    "read_traces": "advharness.reporting.results",
    "robust_accuracy_at": "advharness.judging.referee",
    "run_attacks": "advharness.execution.api",
    "run_experiment": "advharness.execution.orchestrate",
    "support_matrix": "advharness.reporting.support",
    "wrap_model": "advharness.models.wrap",
    "write_report": "advharness.reporting.report.page",
}


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'advharness' has no attribute {name!r}")


__all__ = sorted(_API)
