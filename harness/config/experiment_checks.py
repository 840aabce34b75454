"""Cross-field checks of an experiment that need the whole of it: the plan's size, the data
scale against each model's bounds, and parameters that count input elements."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from advharness.config.catalogue import INPUT_SHAPES
from advharness.config.checks import converges
from advharness.config.grid import Problem
from advharness.config.spec import AttackSpec, size_problems

if TYPE_CHECKING:
    from advharness.config.experiment import Experiment


def unique_specs(attacks: Sequence[AttackSpec]) -> list[AttackSpec]:
    """Specs in order, each resolved spec once (grids may repeat one)."""
    seen: dict[str, AttackSpec] = {}
    for a in attacks:
        seen.setdefault(json.dumps(vars(a.resolve()), sort_keys=True, default=str), a)
    return list(seen.values())


def plan_too_large(exp: Experiment) -> str | None:
    """Why the plan exceeds :attr:`max_cells` (counting each distinct spec once, and the
    cells ``checks`` add)."""

    def twins(attacks: Sequence[AttackSpec]) -> int:
        if "convergence" not in exp.checks:
            return 0
        return sum(converges(a) for a in attacks)

    models = exp.model_entries()
    attacks = exp.attack_entries()
    per_spec = len(models) * len(exp.libraries) * len(exp.run_seeds)
    if per_spec * (len(attacks) + twins(attacks)) <= exp.max_cells:
        return None
    unique = unique_specs(attacks)
    specs, extra = len(unique), twins(unique)
    cells = per_spec * (specs + extra)
    if cells <= exp.max_cells:
        return None
    specs_text = f"{specs:,} attack specs"
    if extra:
        specs_text = f"({specs_text} + {extra:,} convergence checks)"
    counts = (
        f"{len(models):,} models x {specs_text} x {len(exp.libraries)} libraries x {len(exp.run_seeds)} seeds"
    )
    return (
        f"the plan has {cells:,} cells ({counts}), more than max_cells = "
        f"{exp.max_cells:,}; shrink the grids, or raise max_cells (in the file, or "
        "max_cells=N on the command line)"
    )


def scale_problems(exp: Experiment) -> list[Problem]:
    """Models whose bounds disagree with ``data.scale``; substitutes and transfers
    between models of different bounds (their images would need two scales)."""
    out: list[Problem] = []
    scale = exp.data.scale
    bounds = {m.key: tuple(m.bounds) for m in exp.models}
    for i, m in enumerate(exp.models):
        if scale != "model" and tuple(m.bounds) != scale:
            out.append(
                (
                    ("models", i, "bounds"),
                    (
                        f"{_span(m.bounds)} differs from data.scale {_span(scale)}: the model "
                        f"would get pixels in {_span(scale)}; set data.scale: {_span(m.bounds)} "
                        "(every model) or data.scale: model (each model its own bounds)"
                    ),
                )
            )
        target = bounds.get(m.substitute_of or "")
        if target is not None and target != tuple(m.bounds):
            out.append(
                (
                    ("models", i, "substitute_of"),
                    (
                        f"{m.substitute_of!r} takes inputs in {_span(target)}, the substitute "
                        f"recipe in {_span(m.bounds)}: a substitute learns from its target's "
                        "answers to the same images"
                    ),
                )
            )
    for i, a in enumerate(exp.attacks):
        if a.source is None or a.source not in bounds:
            continue
        others = [k for k in (a.target_models or bounds) if k != a.source]
        differ = [k for k in others if bounds.get(k, bounds[a.source]) != bounds[a.source]]
        if differ:
            out.append(
                (
                    ("attacks", i, "source"),
                    (
                        f"{a.source!r} takes inputs in {_span(bounds[a.source])}, "
                        f"{', '.join(map(repr, differ))} in other bounds: a transfer cell needs "
                        "models of equal bounds"
                    ),
                )
            )
    return out


def param_size_problems(exp: Experiment) -> list[Problem]:
    """Attack parameters larger than the dataset's inputs allow (e.g. ZOO ``coordinates``
    above the number of features), known before anything is loaded."""
    shape = INPUT_SHAPES[exp.data.dataset]
    return [
        (("attacks", i, "params", param), msg)
        for i, a in enumerate(exp.attacks)
        for param, msg in size_problems(a, shape, exp.data.dataset)
    ]


def _span(bounds: Sequence[float]) -> str:
    return f"[{bounds[0]:g}, {bounds[1]:g}]"
