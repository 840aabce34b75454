"""The hardening loop: attack -> measure -> defend -> re-attack, one round per defense.

Round 0 runs the attack pool on the undefended models; round ``i`` adds the ``i``-th
defense of the experiment file (its variant, its adaptive surrogate, the transfer attacks
from its undefended model) and runs what is new. All rounds share one results directory, so
a round re-uses every cell an earlier round (or an earlier run) stored. After each round the
defense's worst case over the pool (:func:`advharness.analytics.defenses.defense_worst_case`)
is compared with the target: the loop stops at the first round at or below it, or when the
defenses are exhausted, and says which. The experiment's ``expect:`` entries are checked on
the whole loop's results (``expectations.csv``, as for a run).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from advharness.analytics.defenses import defense_worst_case
from advharness.config.experiment import Experiment
from advharness.core.errors import HarnessError
from advharness.reporting.run_result import RunResult

log = logging.getLogger(__name__)
progress = logging.getLogger("advharness.progress")


@dataclass
class Round:
    """One round: its number, the defense it added (None: the undefended models), the
    models it measures and their worst-case success rate over the pool (the highest over
    their norm/eps/targeting settings; NaN when no cell had an eps)."""

    index: int
    defense: str | None
    models: list[str]
    worst_case_success_rate: float
    reached: bool
    #: Wall time of the round (building its models, running its new cells).
    wall_s: float = math.nan


@dataclass
class HardenResult:
    result: RunResult
    rounds: list[Round] = field(default_factory=list)
    target: float | None = None
    #: ``target reached`` (at the last round) or ``defenses exhausted``.
    stopped: str = ""
    worst_case: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: The before/after table (:func:`advharness.reporting.harden.before_after`).
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Published vs measured over every round's cells
    #: (:func:`advharness.reporting.compare.expectations_table`; empty without ``expect:``).
    expectations: pd.DataFrame = field(default_factory=pd.DataFrame)

    def verdict(self) -> str:
        """One line: why the loop stopped, at which round, with which rate."""
        last = self.rounds[-1]
        what = f"round {last.index} ({last.defense or 'undefended'})"
        rate = f"worst-case success rate {last.worst_case_success_rate:.3f}"
        if self.stopped == "target reached":
            return f"target reached: {what}, {rate} <= target {self.target:g}"
        if self.target is None:
            return f"defenses exhausted: all {len(self.rounds)} rounds ran (no target set)"
        best = min(
            self.rounds, key=lambda r: (math.isnan(r.worst_case_success_rate), r.worst_case_success_rate)
        )
        return (
            f"defenses exhausted: no round reached target {self.target:g}; the lowest worst-case "
            f"success rate was {best.worst_case_success_rate:.3f} (round {best.index}, "
            f"{best.defense or 'undefended'})"
        )


def _round_experiment(exp: Experiment, n_defenses: int) -> Experiment:
    """``exp`` with its first ``n_defenses`` defenses, without ``expect:`` (an entry may name
    a later round's defended model; the loop checks them once, on every round's cells)."""
    data = exp.model_dump(mode="json")
    data["defenses"] = data["defenses"][:n_defenses]
    data["expect"] = []
    return Experiment.model_validate(data)


def _measured(worst: pd.DataFrame, models: Sequence[str]) -> float:
    if worst.empty:
        return math.nan
    rates = worst.loc[worst["defended_model"].isin(models), "worst_case_success_rate"].dropna()
    return float(rates.max()) if len(rates) else math.nan


def harden(
    exp: Experiment,
    *,
    target: float | None = None,
    results_root: str | Path = "results",
    out_dir: str | Path | None = None,
    **run_options: Any,
) -> HardenResult:
    """Run the hardening loop of ``exp`` (see the module docstring). ``target``: the
    worst-case success rate to reach (default: the file's ``target_success_rate``; None:
    every round runs). ``run_options`` go to :func:`run_experiment` (backend, workers...)."""
    from advharness.execution.orchestrate import run_experiment

    if not exp.defenses:
        raise HarnessError(f"experiment {exp.name!r} has no defenses to harden with (add a defenses list)")
    target = exp.target_success_rate if target is None else target
    if target is not None and not 0.0 <= target <= 1.0:
        raise HarnessError(f"target success rate must be in [0, 1], got {target}")
    out = Path(out_dir) if out_dir is not None else Path(results_root) / exp.name
    rounds: list[Round] = []
    result: RunResult | None = None
    worst = pd.DataFrame()
    stopped = "defenses exhausted"
    for i in range(len(exp.defenses) + 1):
        sub = _round_experiment(exp, i)
        if i == 0:
            models = [m.key for m in exp.models]
            name = None
        else:
            d = exp.defenses[i - 1]
            models, name = [d.key], d.key
        progress.info("round %d: %s", i, name or "the undefended models")
        start = time.perf_counter()
        result = run_experiment(sub, out_dir=out, **run_options)
        wall = time.perf_counter() - start
        worst = defense_worst_case(result.summary, result.records)
        rate = _measured(worst, models)
        reached = target is not None and not math.isnan(rate) and rate <= target
        rounds.append(Round(i, name, models, rate, reached, wall))
        progress.info("round %d: worst-case success rate %.3f", i, rate)
        if reached:
            stopped = "target reached"
            break
    assert result is not None
    h = HardenResult(result, rounds, target, stopped, worst)
    h.table = harden_tables(h, exp)[1]
    if exp.expect:  # the rounds ran without them: the manifest records the file's
        from advharness.reporting.compare import expectations_table

        result.manifest.setdefault("experiment", {})["expect"] = exp.model_dump(mode="json")["expect"]
        h.expectations = expectations_table(result, exp.expect)
    if result.path is not None:
        write_harden(h)
    return h


def harden_tables(h: HardenResult, exp: Experiment) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rounds table and the before/after table (:func:`advharness.reporting.harden.before_after`)."""
    from advharness.config.defenses_expand import undefended
    from advharness.reporting.harden import before_after

    models = [m for r in h.rounds for m in r.models]
    bases = {m: undefended(exp, m) for m in models}
    table = before_after(h.result.summary, h.worst_case, models, h.result.manifest, bases)
    return rounds_table(h), table


def write_harden(h: HardenResult) -> Path:
    """Write the loop's tables into the run's results directory (``harden_rounds.csv``,
    ``harden.csv``, ``defense_worst_case.csv``; with expectations, ``expectations.csv`` and
    the manifest that records them), each atomically; returns the directory."""
    from advharness.core.atomic import atomic_write
    from advharness.reporting.compare import write_expectations
    from advharness.reporting.results import write_manifest

    assert h.result.path is not None
    out = Path(h.result.path)
    frames = {"harden_rounds.csv": (rounds_table(h), False), "harden.csv": (h.table, True)}
    frames["defense_worst_case.csv"] = (h.worst_case, False)
    for name, (frame, index) in frames.items():
        atomic_write(out / name, lambda p, f=frame, i=index: f.to_csv(p, index=i))
    if not h.expectations.empty:
        write_expectations(h.expectations, out)
        write_manifest(h.result.manifest, out)
    return out


def rounds_table(h: HardenResult) -> pd.DataFrame:
    """One row per round: the defense, its models, the worst-case success rate, whether it
    reached the target."""
    return pd.DataFrame(
        [
            {
                "round": r.index,
                "defense": r.defense or "(none)",
                "models": ", ".join(r.models),
                "worst_case_success_rate": r.worst_case_success_rate,
                "target": h.target,
                "reached": r.reached,
                "wall_s": round(r.wall_s, 1),
            }
            for r in h.rounds
        ]
    )
