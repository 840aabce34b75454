"""advharness: one refereed interface over ART, Foolbox and CleverHans attacks.

Python API (imports are lazy, so ``import advharness`` stays cheap)::

    from advharness import run_attacks, run_experiment, load_experiment, read_results
    from advharness import wrap_model, load_dataset, load_recipe, AttackSpec
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {
    "AttackSpec": "advharness.spec",
    "Experiment": "advharness.experiment",
    "HarnessError": "advharness.errors",
    "RunResult": "advharness.runner",
    "head_to_head": "advharness.tables",
    "load_dataset": "advharness.data",
    "load_experiment": "advharness.experiment",
    "load_recipe": "advharness.recipes",
    "read_adversarials": "advharness.results",
    "read_results": "advharness.results",
    "run_attacks": "advharness.runner",
    "run_experiment": "advharness.batch",
    "support_matrix": "advharness.support",
    "wrap_model": "advharness.models",
}


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'advharness' has no attribute {name!r}")


__all__ = sorted(_API)
