"""Attack specs: what a user writes, validated and resolved to explicit parameters."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from advharness.config.catalogue import (
    CATALOGUE,
    DEFAULT_QUERY_LEVELS,
    INTEGER_PARAMS,
    LIBRARIES,
    POSITIVE_PARAMS,
    Norm,
)
from advharness.config.fields import Bool, Float, Int, scalar
from advharness.config.querymode import QueryMode, default_query_mode
from advharness.core.types import ThreatModel

#: At most this many bisection steps (float32 inputs: 2^-30 of a bracket is below rounding).
MAX_BISECTION_STEPS = 30
#: At most this many doublings from ``start`` to ``max``.
MAX_DOUBLINGS = 30

TargetMode = Literal["random", "least_likely"]


class EpsSearchSpec(BaseModel):
    """``search: {eps: {start, max, steps}}``: a per-sample radius search (absolute eps, in
    input units): double from ``start`` until the refereed attack succeeds or ``max`` is
    reached (``max`` is always tried), then ``steps`` bisection steps between the last
    failing and the first succeeding eps (see :mod:`advharness.cells.search`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: Annotated[Float, Field(gt=0)]
    max: Annotated[Float, Field(gt=0)]
    steps: Annotated[Int, Field(ge=0, le=MAX_BISECTION_STEPS)] = 8

    @model_validator(mode="after")
    def _order(self) -> EpsSearchSpec:
        if self.max < self.start:
            raise ValueError(f"max ({self.max:g}) must be >= start ({self.start:g})")
        if self.max / self.start > 2.0**MAX_DOUBLINGS:
            raise ValueError(
                f"max / start is {self.max / self.start:.3g}: at most 2^{MAX_DOUBLINGS} "
                f"({MAX_DOUBLINGS} doublings); raise start or lower max"
            )
        return self


class SearchSpec(BaseModel):
    """What a cell searches instead of running at one setting; only ``eps`` for now."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    eps: EpsSearchSpec

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, v: Any) -> Any:
        if not isinstance(v, dict | SearchSpec):
            what = "search: eps needs its range" if v == "eps" else f"must be a mapping, got {v!r}"
            raise ValueError(
                f"{what}: search: {{eps: {{start: 0.01, max: 1.0, steps: 8}}}} (start and max "
                "absolute, in input units; steps: bisection steps, default 8)"
            )
        return v


@dataclass(frozen=True)
class EpsSearch:
    """A resolved :class:`EpsSearchSpec`."""

    start: float
    max: float
    steps: int

    def to_json(self) -> str:
        return json.dumps({"eps": asdict(self)}, sort_keys=True)


class AttackSpec(BaseModel):
    """A canonical attack spec, as written in an experiment file or passed from Python.

    ``eps`` and ``step_size`` are absolute, in input units (the model's ``bounds`` scale).
    ``params`` holds attack-specific canonical parameters (see the catalogue);
    ``library_options`` is the explicit escape hatch: extra keyword arguments per library,
    passed verbatim and recorded.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    attack: str
    norm: Norm | None = None
    eps: Float | None = Field(default=None, ge=0)
    steps: Int | None = Field(default=None, ge=1)
    step_size: Float | None = Field(default=None, gt=0)
    random_start: Bool = False
    restarts: Int = Field(default=1, ge=1)
    targeted: Bool = False
    target_mode: TargetMode = "random"
    threat_model: ThreatModel | None = None  # default: the attack's own (catalogue)
    #: Queries per sample (forward rows) a black-box cell may use; the oracle enforces it.
    budget: Int | None = Field(default=None, ge=1)
    #: Query counts at which black-box success and norms are also reported.
    query_levels: tuple[Int, ...] = DEFAULT_QUERY_LEVELS
    #: Black-box cells: one library call per chunk of samples (``batched``) or per sample;
    #: None: the library's default (:func:`advharness.config.querymode.default_query_mode`).
    query_mode: QueryMode | None = None
    #: Transfer: craft white-box on this model (its name) and referee on every other model.
    source: str | None = Field(default=None, min_length=1)
    #: Transfer: the models it is judged on (default: every model but the source).
    target_models: tuple[str, ...] | None = None
    params: dict[str, Annotated[float | int | str | bool, BeforeValidator(scalar)]] = Field(
        default_factory=dict
    )
    library_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: Per-sample search of the smallest successful eps (fixed-budget attacks; no ``eps``).
    search: SearchSpec | None = None

    @model_validator(mode="after")
    def _check(self) -> AttackSpec:
        if self.attack not in CATALOGUE:
            raise ValueError(f"unknown attack {self.attack!r}; known: {', '.join(sorted(CATALOGUE))}")
        d = CATALOGUE[self.attack]
        if self.norm is not None and self.norm not in d.norms:
            raise ValueError(f"{self.attack} supports norms {list(d.norms)}, not {self.norm!r}")
        if self.search is not None:
            if d.kind != "fixed":
                raise ValueError(
                    f"search: eps is for fixed-budget attacks; {self.attack} is a minimum-norm "
                    "attack (its per-sample norms are already distances)"
                )
            if self.eps is not None:
                raise ValueError("give eps or search (which searches eps per sample), not both")
            if self.source is not None:
                raise ValueError("search: eps is not for transfer cells (source)")
        elif d.kind == "fixed" and self.eps is None:
            raise ValueError(f"{self.attack} is a fixed-budget attack: eps is required")
        for name, value, used in (
            ("steps", self.steps, "steps" in d.common),
            ("step_size", self.step_size, "step_size" in d.common),
        ):
            if value is not None and not used:
                raise ValueError(f"{self.attack} takes no {name}")
        if self.random_start and "random_start" not in d.common:
            raise ValueError(f"{self.attack} takes no random_start")
        if self.restarts > 1 and "restarts" not in d.common:
            raise ValueError(f"{self.attack} takes no restarts")
        if self.restarts > 1 and self.attack == "pgd" and not self.random_start:
            raise ValueError("restarts > 1 needs random_start: true (restarts would be identical)")
        threat = self.threat_model or d.threat_model
        if self.budget is not None and threat == "white-box":
            raise ValueError(
                "budget applies to score-based and decision-based cells; this cell "
                "is white-box (set threat_model, or drop budget)"
            )
        if self.query_mode is not None and threat == "white-box":
            raise ValueError(
                "query_mode applies to score-based and decision-based cells; this cell "
                "is white-box (set threat_model, or drop query_mode)"
            )
        if self.source is not None and threat != "white-box":
            raise ValueError(
                f"a transfer cell (source) crafts white-box on its source model; {self.attack} runs {threat}"
            )
        if self.target_models is not None and (self.source is None or not self.target_models):
            raise ValueError(
                "target_models lists the models a transfer cell (source) is "
                "judged on: needs source and at least one model"
            )
        if not self.query_levels or any(q < 1 for q in self.query_levels):
            raise ValueError("query_levels must be a non-empty list of integers >= 1")
        unknown = set(self.params) - set(d.params)
        if unknown:
            raise ValueError(f"unknown params {sorted(unknown)} for {self.attack}; known: {sorted(d.params)}")
        for k, v in self.params.items():
            kind = _kind(d.params[k])
            if _kind(v) != kind:
                raise ValueError(f"params.{k} must be a {kind}, got {v!r}")
            if isinstance(v, int | float) and not math.isfinite(v):
                raise ValueError(f"params.{k} must be a finite number, got {v!r}")
            if k in POSITIVE_PARAMS and not (isinstance(v, int | float) and v > 0):
                raise ValueError(f"params.{k} must be > 0")
            if k in INTEGER_PARAMS and not float(v).is_integer():
                raise ValueError(f"params.{k} must be a whole number, got {v!r}")
            if k in d.choices and v not in d.choices[k]:
                raise ValueError(f"params.{k} must be one of {', '.join(d.choices[k])}, got {v!r}")
        bad_libs = set(self.library_options) - set(LIBRARIES)
        if bad_libs:
            raise ValueError(
                f"library_options names unknown libraries {sorted(bad_libs)}; known: {list(LIBRARIES)}"
            )
        return self

    def resolve(self) -> ResolvedSpec:
        """Fill every parameter the attack uses with an explicit value."""
        d = CATALOGUE[self.attack]
        norm = self.norm or d.norms[0]
        steps = self.steps if self.steps is not None else d.default_steps
        if self.attack in ("fgsm", "fgm"):
            steps = 1
        step_size = self.step_size
        if self.eps is not None and (step_size is None or self.attack in ("fgsm", "fgm")):
            step_size = default_step_size(self.attack, self.eps, steps)
        random_start = self.random_start or self.attack == "apgd"
        params = {**d.params, **self.params}
        return ResolvedSpec(
            attack=self.attack,
            kind=d.kind,
            norm=norm,
            eps=self.eps,
            steps=steps,
            step_size=step_size,
            random_start=random_start,
            restarts=self.restarts,
            targeted=self.targeted,
            target_mode=self.target_mode,
            threat_model=self.threat_model or d.threat_model,
            budget=self.budget,
            query_levels=tuple(sorted(set(self.query_levels))),
            query_mode=self.query_mode,
            source=self.source,
            target_models=self.target_models,
            params=params,
            library_options={k: dict(v) for k, v in self.library_options.items()},
            search=None if self.search is None else EpsSearch(**self.search.eps.model_dump()),
        )


def default_step_size(attack: str, eps: float, steps: int | None) -> float | None:
    """The step size a spec that leaves ``step_size`` out gets at ``eps``: Madry et al.'s
    ``2.5*eps/steps``, APGD's ``2*eps`` (Croce & Hein), FGSM/FGM's ``eps`` (one step); None
    for attacks without one."""
    if attack in ("fgsm", "fgm"):
        return eps
    if "step_size" not in CATALOGUE[attack].common:
        return None
    return 2.0 * eps if attack == "apgd" else 2.5 * eps / float(steps or 1)


def size_problems(
    spec: AttackSpec | ResolvedSpec, shape: tuple[int, ...], data: str
) -> list[tuple[str, str]]:
    """``(param, message)`` for each parameter of ``spec`` that counts input elements
    (:attr:`AttackDef.size_limits`) and exceeds inputs of ``shape`` (one sample: (C, H, W)
    or (features,)); ``data`` names the inputs in the message."""
    limits = CATALOGUE[spec.attack].size_limits
    if not limits:
        return []
    params = spec.resolve().params if isinstance(spec, AttackSpec) else spec.params
    sizes = {
        "features": math.prod(shape),
        "pixels": math.prod(shape[1:]) if len(shape) == 3 else math.prod(shape),
    }
    out = []
    for name, unit in limits.items():
        value, limit = params[name], sizes[unit]
        if isinstance(value, int | float) and value > limit:
            given = " (the default)" if value == CATALOGUE[spec.attack].params[name] else ""
            dims = "x".join(map(str, shape))
            out.append(
                (
                    name,
                    f"{value:g}{given} exceeds the {limit} input {unit} of {data} "
                    f"({dims}); set params.{name} <= {limit}",
                )
            )
    return out


def _kind(v: Any) -> str:
    """``boolean``, ``number`` or ``string``: what a ``params`` value must be, after its
    catalogue default."""
    if isinstance(v, bool):
        return "boolean"
    return "number" if isinstance(v, int | float) else "string"


@dataclass(frozen=True)
class ResolvedSpec:
    """A spec with every parameter explicit; what adapters translate and results record."""

    attack: str
    kind: str
    norm: Norm
    eps: float | None
    steps: int | None
    step_size: float | None
    random_start: bool
    restarts: int
    targeted: bool
    target_mode: TargetMode
    threat_model: ThreatModel = "white-box"
    budget: int | None = None
    query_levels: tuple[Int, ...] = DEFAULT_QUERY_LEVELS
    #: Black-box cells: ``batched`` or ``per-sample`` once :meth:`for_library` has filled
    #: the library's default; None on white-box cells (and before).
    query_mode: QueryMode | None = None
    source: str | None = None
    target_models: tuple[str, ...] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    library_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    search: EpsSearch | None = None

    @property
    def label(self) -> str:
        """Short human label, e.g. ``pgd-linf eps=0.1 targeted``."""
        eps = "" if self.eps is None else f" eps={self.eps:g}"
        if self.search is not None:
            eps = f" eps=search[{self.search.start:g}..{self.search.max:g}]"
        access = "" if self.threat_model == "white-box" else f" [{self.threat_model}]"
        budget = "" if self.budget is None else f" budget={self.budget}"
        source = "" if self.source is None else f" from {self.source}"
        return f"{self.attack}-{self.norm}{eps}{' targeted' if self.targeted else ''}{access}{budget}{source}"

    def at_eps(self, eps: float) -> ResolvedSpec:
        """This spec run at ``eps`` without its search (one step of an eps search): a
        ``step_size`` the spec left out follows the default rule at ``eps``."""
        step_size = self.step_size
        if step_size is None or self.attack in ("fgsm", "fgm"):
            step_size = default_step_size(self.attack, eps, self.steps)
        return replace(self, eps=float(eps), step_size=step_size, search=None)

    def for_cell(self) -> ResolvedSpec:
        """The spec a cell runs: a minimum-norm attack's ``eps`` only changes reporting (see
        :func:`advharness.judging.referee.report_at_eps`), so it is dropped here and the cell (its
        content key, its seed, its stored result) is the same at every radius."""
        return replace(self, eps=None) if self.kind == "minimal" else self

    def for_library(self, library: str) -> ResolvedSpec:
        """This spec as ``library`` runs it: a black-box cell's ``query_mode`` filled with the
        library's default where the spec set none (white-box cells have none)."""
        if self.threat_model == "white-box" or self.query_mode is not None:
            return self
        return replace(self, query_mode=default_query_mode(library, self.attack))

    def columns(self) -> dict[str, Any]:
        """Flat columns for results tables: every resolved field, ``param_<name>`` for each
        attack parameter; ``eps``/``step_size`` NaN and ``steps``/``budget`` None where unset;
        lists and the escape hatch as JSON strings (empty when unused)."""
        out: dict[str, Any] = {
            "attack": self.attack,
            "kind": self.kind,
            "norm": self.norm,
            "eps": _num(self.eps),
            "steps": self.steps,
            "step_size": _num(self.step_size),
            "random_start": self.random_start,
            "restarts": self.restarts,
            "targeted": self.targeted,
            "target_mode": self.target_mode,
            "threat_model": self.threat_model,
            "budget": self.budget,
            "query_levels": ",".join(str(q) for q in self.query_levels),
            "query_mode": self.query_mode or "",
            "target_models": ",".join(self.target_models or ()),
            "library_options": (
                json.dumps(self.library_options, sort_keys=True, default=str) if self.library_options else ""
            ),
            "search": "" if self.search is None else self.search.to_json(),
        }
        out.update({f"param_{k}": v for k, v in sorted(self.params.items())})
        return out

    def options_for(self, library: str) -> dict[str, Any]:
        """The escape-hatch keyword arguments for ``library`` (empty if none)."""
        return dict(self.library_options.get(library, {}))

    def to_dict(self) -> dict[str, Any]:
        """Every field; ``search`` only when set and ``query_mode`` only when ``batched`` (the
        content keys of cells without a search, and of per-sample black-box cells, stay what
        they were before searches and batched cells existed: a stored per-sample cell is
        found again, and a batched one is never taken for it)."""
        out = asdict(self)
        if out["search"] is None:
            del out["search"]
        if out["query_mode"] != "batched":
            del out["query_mode"]
        return out


def _num(v: float | None) -> float:
    return float("nan") if v is None else float(v)
