"""advharness: one refereed interface over ART, Foolbox and CleverHans attacks.

Python API (imports are lazy, so ``import harness`` stays cheap)::

    from harness import run_attacks, run_experiment, load_experiment, read_results
    from harness import wrap_model, load_dataset, load_recipe, AttackSpec
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {
    "AttackSpec": "harness.spec",
    "Experiment": "harness.experiment",
    "HarnessError": "harness.errors",
    "RunResult": "harness.runner",
    "head_to_head": "harness.tables",
    "load_dataset": "harness.data",
    "load_experiment": "harness.experiment",
    "load_recipe": "harness.recipes",
    "read_adversarials": "harness.results",
    "read_results": "harness.results",
    "run_attacks": "harness.runner",
    "run_experiment": "harness.batch",
    "support_matrix": "harness.support",
    "wrap_model": "harness.models",
}


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


__all__ = sorted(_API)
