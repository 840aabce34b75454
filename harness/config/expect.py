"""Expectations (``expect:``): the published figures and findings a run is compared with.

```yaml
expect:
  - {metric: robust_accuracy, where: {attack: fgsm, library: art}, value: 0.34, tolerance: 0.05,
     source: "torchattacks README, Performance Comparison"}
  - {metric: robust_accuracy, where: {attack: fgsm}, equal_across: library, tolerance: 0.0,
     source: "torchattacks README: FGSM identical in every library"}
  - {metric: robust_accuracy, where: {model: adv-torch}, direction: decreasing,
     order: [{attack: fgsm}, {attack: pgd, steps: 40}, {attack: pgd, steps: 100}],
     source: "Madry et al. 2018, Table 1"}
  - {metric: mean_l2, where: {attack: cw, library: art}, greater_than: {library: foolbox},
     source: "torchattacks README: ART's C&W L2 larger"}
  - {metric: robust_accuracy, where: {model: adv-torch}, direction: decreasing,
     order: [{attack: pgd, restarts: 5}, {worst_case: true}], source: "Madry et al. 2018"}
  - {metric: local_optimality, where: {attack: fgm}, equal_across: library, tolerance: 0.0,
     source: "AttackBench: FGM's optimality identical in every library"}
```

One expectation is a ``metric`` (a summary column, :data:`METRICS`) on the ``ok`` summary
rows its ``where`` selects (column -> value, every pair must match; ``worst_case: true``
makes the selected cells one measurement of their per-sample worst case, for a rate), and
exactly one of:

* ``value`` with ``tolerance`` (absolute): a published figure;
* ``equal_across: <column>`` with ``tolerance``: the metric is the same, within tolerance,
  for every value of that column among the selected rows (e.g. every library);
* ``order: [selector, ...]`` with ``direction`` (``decreasing`` or ``increasing``): each
  selector, over ``where``'s pairs, selects one side; the metric runs strictly in that
  direction along the list;
* ``greater_than: selector``: the rows ``where`` selects have the larger metric than those
  ``where`` updated with the selector selects.

``source`` says where the figure or finding was published; ``note`` is free text.
Evaluated by :func:`advharness.analytics.expectations.check_expectations`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from advharness.config.fields import Float
from advharness.config.grid import Problem

if TYPE_CHECKING:
    from advharness.config.experiment import Experiment

#: Rates and the summary column they are a share of (a Wilson interval is computed for them).
RATE_METRICS: dict[str, str] = {
    "success_rate": "n_correct",
    "success_rate_at_eps": "n_correct",
    "robust_accuracy": "n",
    "robust_accuracy_at_eps": "n",
    "clean_accuracy": "n",
}
#: Every metric an expectation may name: the rates, AttackBench's optimality, per-cell
#: distances, cost.
METRICS: tuple[str, ...] = (
    *RATE_METRICS,
    "local_optimality",
    *(f"{stat}_{norm}" for stat in ("median", "mean") for norm in ("l0", "l1", "l2", "linf", "norm")),
    "time_s",
    "queries_per_sample",
    "forward_per_sample",
    "backward_per_sample",
)
#: Summary columns a selector may name (and any ``param_<name>``).
SELECTOR_COLUMNS: tuple[str, ...] = (
    "model",
    "framework",
    "library",
    "attack",
    "kind",
    "norm",
    "eps",
    "targeted",
    "threat_model",
    "run_seed",
    "steps",
    "step_size",
    "restarts",
    "random_start",
    "target_mode",
    "budget",
    "query_mode",
    "search",
    "source_model",
    "defense",
    "defended_model",
    "adaptive",
    "check",
    "family",
)
#: The selector key that measures the per-sample worst case over the cells it selects.
WORST_CASE = "worst_case"
#: Columns ``equal_across`` may name.
ACROSS_COLUMNS = ("library", "framework", "model", "run_seed")

Selector = dict[str, Any]
_PLURAL = {"model": "models", "library": "libraries", "attack": "attacks"}


def selector_problem(selector: Any) -> str | None:
    """Why ``selector`` is not a mapping of known columns to single values (None: it is)."""
    if not isinstance(selector, dict):
        return f"must be a mapping column -> value, got {selector!r}"
    for col, v in selector.items():
        if col == WORST_CASE:
            if v is not True:
                return f"{WORST_CASE}: must be true (the per-sample worst case of the cells), got {v!r}"
            continue
        if not isinstance(col, str) or (col not in SELECTOR_COLUMNS and not col.startswith("param_")):
            known = ", ".join(SELECTOR_COLUMNS)
            return f"unknown column {col!r}; known: {known}, param_<name> or {WORST_CASE}"
        if not isinstance(v, str | int | float | bool):
            return f"{col}: must be one value (a string, number or boolean), got {v!r}"
        if isinstance(v, float) and not math.isfinite(v):
            return f"{col}: must be a finite number"
    return None


def _check(selector: Any) -> Any:
    problem = selector_problem(selector)
    if problem is not None:
        raise ValueError(problem)
    return selector


class Expectation(BaseModel):
    """One published figure or finding (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str
    where: Selector = Field(default_factory=dict)
    value: Float | None = None
    tolerance: Float | None = Field(default=None, ge=0)
    equal_across: Literal["library", "framework", "model", "run_seed"] | None = None
    order: list[Selector] | None = Field(default=None, min_length=2)
    direction: Literal["decreasing", "increasing"] | None = None
    greater_than: Selector | None = None
    source: str = Field(min_length=1)
    note: str | None = None

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        if v not in METRICS:
            raise ValueError(f"unknown metric {v!r}; known: {', '.join(METRICS)}")
        return v

    @field_validator("where", "greater_than", mode="before")
    @classmethod
    def _selector(cls, v: Any) -> Any:
        return v if v is None else _check(v)

    @field_validator("order", mode="before")
    @classmethod
    def _selectors(cls, v: Any) -> Any:
        if isinstance(v, list):
            for i, s in enumerate(v):
                problem = selector_problem(s)
                if problem is not None:
                    raise ValueError(f"entry {i}: {problem}")
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> Expectation:
        kinds = [
            k for k in ("value", "equal_across", "order", "greater_than") if getattr(self, k) is not None
        ]
        if len(kinds) != 1:
            got = f"got {', '.join(kinds)}" if kinds else "got none"
            raise ValueError(f"give exactly one of value, equal_across, order, greater_than ({got})")
        kind = kinds[0]
        if kind in ("value", "equal_across") and self.tolerance is None:
            raise ValueError(f"{kind} needs tolerance (absolute; 0 for identical)")
        if kind in ("order", "greater_than") and self.tolerance is not None:
            raise ValueError(f"tolerance is for value and equal_across, not {kind} (a strict comparison)")
        if (kind == "order") != (self.direction is not None):
            raise ValueError(
                "order needs direction (decreasing or increasing), and direction is only for order"
            )
        if kind == "equal_across" and self.equal_across in self.where:
            raise ValueError(f"where fixes {self.equal_across}: nothing to compare across")
        if self.metric not in RATE_METRICS and any(WORST_CASE in s for s in self.sides()):
            raise ValueError(f"{WORST_CASE} measures rates ({', '.join(RATE_METRICS)}), not {self.metric}")
        return self

    @property
    def kind(self) -> str:
        """``value``, ``equal_across``, ``order`` or ``greater_than``."""
        if self.value is not None:
            return "value"
        if self.equal_across is not None:
            return "equal_across"
        return "order" if self.order is not None else "greater_than"

    def sides(self) -> list[Selector]:
        """The selectors whose metrics are compared: ``where`` (value, equal_across), each
        order entry over ``where``, or ``where`` and ``where`` updated by ``greater_than``."""
        if self.order is not None:
            return [{**self.where, **s} for s in self.order]
        if self.greater_than is not None:
            return [dict(self.where), {**self.where, **self.greater_than}]
        return [dict(self.where)]


def expectation_problems(exp: Experiment) -> list[Problem]:
    """Selectors naming a model, library or attack the experiment does not have."""
    known = {
        "model": [m.key for m in exp.model_entries()],
        "library": list(exp.libraries),
        "attack": sorted({a.attack for a in exp.attack_entries()}),
    }
    out: list[Problem] = []
    for i, e in enumerate(exp.expect):
        places: list[tuple[tuple[str | int, ...], Selector]] = [(("where",), e.where)]
        places += [(("order", j), s) for j, s in enumerate(e.order or [])]
        places += [(("greater_than",), e.greater_than)] if e.greater_than is not None else []
        for loc, selector in places:
            for col, names in known.items():
                if col in selector and str(selector[col]) not in names:
                    known_names = f"{_PLURAL[col]} ({', '.join(names)})"
                    out.append(
                        (
                            ("expect", i, *loc, col),
                            f"{selector[col]!r} is not one of the experiment's {known_names}",
                        )
                    )
    return out
