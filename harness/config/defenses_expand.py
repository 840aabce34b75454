"""What an experiment's ``defenses`` add to it: model entries (each defended variant and its
adaptive surrogate) and transfer attacks from each variant's undefended model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from advharness.config.defenses import TRAINED, DefenseConfig
from advharness.config.grid import Problem

if TYPE_CHECKING:
    from advharness.config.experiment import Experiment, ModelConfig
    from advharness.config.spec import AttackSpec


def _entries(exp: Experiment) -> dict[str, ModelConfig]:
    return {m.key: m for m in exp.models}


def defense_problems(exp: Experiment) -> list[Problem]:
    """Defenses naming a model that does not exist (or comes later), trained defenses of a
    model without a recipe, ensembles across frameworks."""
    out: list[Problem] = []
    known = _entries(exp)
    frameworks = {k: m.framework for k, m in known.items()}
    for i, d in enumerate(exp.defenses):
        names = [("of", d.of)] if d.of is not None else [("members", m) for m in d.members or ()]
        missing = [(field, n) for field, n in names if n not in frameworks]
        for field, n in missing:
            where: tuple[str | int, ...] = ("defenses", i, field)
            known_keys = ", ".join(frameworks)
            out.append((where, f"{n!r} is not one of the models or an earlier defense ({known_keys})"))
        if missing:
            continue
        base = known.get(d.of) if d.of is not None else None
        if d.defense in TRAINED and (base is None or base.recipe is None or base.substitute_of is not None):
            out.append(
                (
                    ("defenses", i, "of"),
                    f"{d.defense} retrains the model: {d.of!r} must be a recipe model of the models list",
                )
            )
            continue
        fws = {frameworks[n] for _, n in names}
        if len(fws) > 1:
            out.append((("defenses", i, "members"), f"members mix frameworks ({', '.join(sorted(fws))})"))
            continue
        entry = _entry(d, known, surrogate=False)
        known[d.key] = entry
        frameworks[d.key] = entry.framework
    return out


def _entry(d: DefenseConfig, known: dict[str, ModelConfig], *, surrogate: bool) -> ModelConfig:
    base = known[d.of if d.of is not None else (d.members or [""])[0]]
    key = d.surrogate_key if surrogate else d.key
    return type(base)(
        framework=base.framework,
        device=base.device,
        bounds=base.bounds,
        name=key,
        defense=d,
        surrogate=surrogate,
    )


def defended_entries(exp: Experiment) -> list[ModelConfig]:
    """Each defense's model entry, followed by its adaptive surrogate's when it has one
    (``<key>@bpda`` / ``<key>@eot<k>``), in file order (validated by
    :func:`defense_problems`)."""
    known = _entries(exp)
    out: list[ModelConfig] = []
    for d in exp.defenses:
        entry = _entry(d, known, surrogate=False)
        known[d.key] = entry
        out.append(entry)
        if d.surrogate_key is not None:
            out.append(_entry(d, known, surrogate=True))
    return out


def undefended(exp: Experiment, key: str) -> str | None:
    """The experiment model a defended variant ``key`` is ultimately built from (following
    stacked defenses); None for an ensemble or a model that is no defense."""
    by_key = {d.key: d for d in exp.defenses}
    if key not in by_key:
        return None
    while key in by_key:
        of = by_key[key].of
        if of is None:
            return None
        key = of
    return key


def defense_transfers(exp: Experiment) -> list[AttackSpec]:
    """With ``defense_transfer``: every white-box fixed-budget attack of the pool, crafted on
    each defended variant's undefended model and refereed on the variant (one spec per
    variant, so adding a defense leaves the other variants' cells as they were)."""
    if not exp.defense_transfer or not exp.defenses:
        return []
    out: list[AttackSpec] = []
    for a in exp.attacks:
        r = a.resolve()
        if r.source is not None or r.threat_model != "white-box" or r.kind != "fixed":
            continue
        for d in exp.defenses:
            base = undefended(exp, d.key)
            if base is not None:
                out.append(a.model_copy(update={"source": base, "target_models": (d.key,)}))
    return out
