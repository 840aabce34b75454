"""Experiment files (YAML): parsed and validated before anything runs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from advharness.config.catalogue import CLEAN_ACCURACY_FLOOR, LIBRARIES
from advharness.config.checks import DEFAULT_CONVERGENCE_SAMPLES, Check
from advharness.config.defenses import DefenseConfig
from advharness.config.defenses_expand import defended_entries, defense_problems, defense_transfers
from advharness.config.entries import DataConfig, ModelConfig
from advharness.config.expect import Expectation, expectation_problems
from advharness.config.experiment_checks import (
    param_size_problems,
    plan_too_large,
    scale_problems,
    unique_specs,
)
from advharness.config.fields import Bool, Float, Int
from advharness.config.grid import (
    DEFAULT_MAX_CELLS,
    Expansion,
    Problem,
    apply_overrides,
    expand_experiment,
    locate,
)
from advharness.config.spec import AttackSpec
from advharness.core.errors import HarnessError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: Longest experiment name: it names the results directory (file names stop at 255 bytes).
MAX_NAME_LENGTH = 100


class Experiment(BaseModel):
    """A validated experiment; ``models`` and ``attacks`` are flat (grids expanded)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    seed: Int = 0
    #: Run every cell once per seed (``seed`` is then left at 0); see :attr:`run_seeds`.
    seeds: list[Int] | None = Field(default=None, min_length=1)
    data: DataConfig = Field(default_factory=DataConfig)
    models: list[ModelConfig] = Field(min_length=1)
    libraries: list[str] = Field(default_factory=lambda: list(LIBRARIES), min_length=1)
    attacks: list[AttackSpec] = Field(min_length=1)
    batch_size: Int = Field(default=256, ge=1)
    #: Wall-clock limit per cell, in seconds (enforced by the runner).
    time_limit_s: Float | None = Field(default=None, gt=0)
    #: Worker processes (None: one per core).
    workers: Int | None = Field(default=None, ge=1)
    #: Store each cell's adversarial examples (``cells/<key>.adv.npz``, see
    #: :mod:`advharness.reporting.store`).
    save_adversarials: bool = False
    #: Store each white-box cell's per-sample loss traces (``cells/<key>.trace.npz``).
    save_traces: bool = False
    #: At most this many cells (models x attack specs x libraries x seeds): a grid typo is
    #: refused before anything runs. Raise it in the file or with ``max_cells=N``.
    max_cells: Int = Field(default=DEFAULT_MAX_CELLS, ge=1)
    #: A cell whose model classifies less than this share of the clean inputs correctly is
    #: flagged ``low_clean_accuracy`` (its attack numbers say little).
    clean_accuracy_floor: Float = Field(default=CLEAN_ACCURACY_FLOOR, ge=0, le=1)
    #: Wall-clock limit for building each factory model (checked in a child process first).
    model_build_time_limit_s: Float = Field(default=300.0, gt=0)
    #: Sanity checks that add cells (see :mod:`advharness.config.checks`).
    checks: list[Check] = Field(default_factory=list)
    #: The convergence check re-runs this many samples (the first of the batch).
    convergence_samples: Int = Field(default=DEFAULT_CONVERGENCE_SAMPLES, ge=1)
    #: Defended variants of the models (see :mod:`advharness.config.defenses`).
    defenses: list[DefenseConfig] = Field(default_factory=list)
    #: Also attack every defense with the white-box pool crafted on its undefended model
    #: (transfer cells).
    defense_transfer: Bool = True
    #: How this experiment departs from the published setting it reproduces (printed with
    #: the published-vs-measured comparison and stored in the manifest).
    deviations: list[str] = Field(default_factory=list)
    #: A short profile of the experiment: overrides (``key=value``, as on the command line)
    #: that ``--quick`` applies, e.g. ``[data.n_samples=16]``; the run is named ``<name>-quick``.
    quick: list[str] = Field(default_factory=list)
    #: ``advharness harden`` stops at the first round whose worst-case success rate over
    #: the pool is at most this (None: every round runs).
    target_success_rate: Float | None = Field(default=None, ge=0, le=1)
    #: Published figures and findings the results are compared with (see
    #: :mod:`advharness.config.expect`).
    expect: list[Expectation] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("must be letters, digits, '_', '-' or '.', starting with a letter or digit")
        if len(v) > MAX_NAME_LENGTH:
            raise ValueError(
                f"at most {MAX_NAME_LENGTH} characters (it names the results directory), got {len(v)}"
            )
        return v

    @field_validator("libraries")
    @classmethod
    def _known_libraries(cls, v: list[str]) -> list[str]:
        for lib in v:
            if ":" in lib:  # an Adapter subclass of the user's own, by import path
                from advharness.core.imports import resolve_factory

                try:  # importable and a class here; an Adapter subclass when the plan is made
                    adapter_class = resolve_factory(lib)
                except HarnessError as e:
                    raise ValueError(f"library {lib!r}: {e}") from None
                if not isinstance(adapter_class, type):
                    raise ValueError(f"library {lib!r} is not a class (an Adapter subclass)")
            elif lib not in LIBRARIES:
                raise ValueError(
                    f"unknown library {lib!r}; known: {', '.join(LIBRARIES)} "
                    "(or module:Class for an Adapter subclass)"
                )
        if len(set(v)) != len(v):
            raise ValueError("libraries are listed more than once")
        return v

    @field_validator("checks")
    @classmethod
    def _unique_checks(cls, v: list[Check]) -> list[Check]:
        if len(set(v)) != len(v):
            raise ValueError("checks are listed more than once")
        return v

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("seeds are listed more than once")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> Experiment:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if self.seeds is not None and self.seed != 0:
            problems.append((("seeds",), "give seed or seeds, not both"))
        problems += defense_problems(self)
        if problems:  # the entries below are built from the defenses
            raise _located(problems)
        keys = [m.key for m in self.model_entries()]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            problems.append(((), f"model names must be unique; repeated: {dup}"))
        plain = [m.key for m in self.models if m.substitute_of is None]
        problems += scale_problems(self)
        for i, m in enumerate(self.models):
            if m.defense is not None or m.surrogate:
                problems.append((("models", i), "defense variants go in the defenses section"))
            if m.robustbench is not None and m.dataset != self.data.dataset:
                problems.append(
                    (
                        ("models", i, "dataset"),
                        f"a {m.dataset} model, but data.dataset is {self.data.dataset}",
                    )
                )
            if m.substitute_of is not None and m.substitute_of not in plain:
                problems.append(
                    (
                        ("models", i, "substitute_of"),
                        f"{m.substitute_of!r} is not one of the recipe models ({', '.join(plain)})",
                    )
                )
        problems += param_size_problems(self)
        problems += expectation_problems(self)
        for i, a in enumerate(self.attacks):
            if a.source is not None and a.source not in keys:
                problems.append(
                    (("attacks", i, "source"), f"{a.source!r} is not one of the models ({', '.join(keys)})")
                )
            for j, name in enumerate(a.target_models or ()):
                if name not in keys or name == a.source:
                    problems.append(
                        (
                            ("attacks", i, "target_models", j),
                            f"{name!r} is not one of the models other than the source",
                        )
                    )
        too_many = plan_too_large(self)
        if too_many:
            problems.append(((), too_many))
        if problems:
            raise _located(problems)
        return self

    @property
    def run_seeds(self) -> list[int]:
        """The experiment seeds every cell runs with: ``seeds``, else ``[seed]``."""
        return list(self.seeds) if self.seeds else [self.seed]

    def grid_size(self) -> int:
        """Cells at most: models x attacks x libraries x seeds (transfer specs skip their
        source model, so a run may have fewer)."""
        n = len(self.model_entries()) * len(self.attack_entries())
        return n * len(self.libraries) * len(self.run_seeds)

    def model_entries(self) -> list[ModelConfig]:
        """Every model the experiment runs on: ``models``, then each defense's variant and
        its adaptive surrogate (:func:`~advharness.config.defenses_expand.defended_entries`)."""
        return [*self.models, *defended_entries(self)]

    def attack_entries(self) -> list[AttackSpec]:
        """``attacks``, then the transfer attacks from each defended model's undefended one
        (``defense_transfer``)."""
        return [*self.attacks, *defense_transfers(self)]


def _located(problems: list[tuple[tuple[str | int, ...], str]]) -> ValidationError:
    """A ValidationError whose entries carry their own locations (cross-field checks)."""
    from pydantic_core import InitErrorDetails, PydanticCustomError

    details = [
        InitErrorDetails(type=PydanticCustomError("value_error", msg), loc=loc, input=None)
        for loc, msg in problems
    ]
    return ValidationError.from_exception_data("Experiment", details)


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def format_loc(loc: Sequence[str | int]) -> str:
    """``("attacks", 3, "eps")`` -> ``attacks[3].eps``; ``()`` -> ``<experiment>``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f"[{str(part)!r}]"
    return out or "<experiment>"


def _message(msg: str) -> str:
    msg = msg.removeprefix("Value error, ")
    msg = msg.replace("Input should be greater than or equal to", "must be >=")
    msg = msg.replace("Input should be greater than", "must be >")
    msg = msg.replace("Input should be a finite number", "must be a finite number")
    return " ".join(msg.split())


def format_validation_error(err: ValidationError) -> str:
    """One line per problem, each with its location, e.g. ``attacks[3].eps: must be >= 0``."""
    return "\n".join(f"{format_loc(e['loc'])}: {_message(e['msg'])}" for e in err.errors())


_CROSS_REFERENCES = (("attacks", "source"), ("attacks", "target_models"), ("models", "substitute_of"))


def _problems(err: ValidationError, expansion: Expansion) -> list[Problem]:
    """The validator's problems, less those caused by grid entries left out."""
    out: list[Problem] = []
    for e in err.errors():
        loc = tuple(e["loc"])
        if e["type"] == "too_short" and len(loc) == 1 and loc[0] in expansion.dropped:
            continue  # its entries had grid problems, reported already
        if (
            "models" in expansion.dropped
            and e["type"] == "value_error"
            and len(loc) >= 3
            and (loc[0], loc[2]) in _CROSS_REFERENCES
        ):
            continue  # may name a model left out
        out.append((loc, _message(e["msg"])))
    return out


def parse_experiment(
    data: Any, source: str = "experiment", overrides: Sequence[str] = (), quick: bool = False
) -> Experiment:
    """Validate a mapping (e.g. parsed YAML) into an :class:`Experiment`.

    ``overrides`` (``path=value``, see :func:`advharness.config.grid.apply_overrides`) are applied
    first, then grids are expanded. ``quick``: the file's ``quick`` overrides come first (and
    the name gets ``-quick``). Every problem is reported, one line each:
    ``<source>: <location>: <message>``.
    """
    if not isinstance(data, dict):
        raise HarnessError(f"{source}: expected a mapping at the top level")
    if quick:
        overrides = [*quick_overrides(data, source), *overrides]
    try:
        data = apply_overrides(data, overrides)
    except HarnessError as e:
        raise HarnessError("\n".join(f"{source}: {line}" for line in str(e).splitlines())) from None
    expansion = expand_experiment(data)
    problems = list(expansion.problems)
    exp = None
    try:
        exp = Experiment.model_validate(expansion.data)
    except ValidationError as e:
        problems += locate(_problems(e, expansion), expansion)
    if problems or exp is None:
        order = {k: n for n, k in enumerate(data)}  # file order: top-level key, then entry

        def position(p: Problem) -> tuple[int, int]:
            loc = p[0]
            entry = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else -1
            return (order.get(loc[0], len(order)) if loc else -1, entry)

        lines = [f"{source}: {format_loc(loc)}: {msg}" for loc, msg in sorted(problems, key=position)]
        raise HarnessError("\n".join(dict.fromkeys(lines)))
    return exp.model_copy(update={"attacks": unique_specs(exp.attacks)})


def quick_overrides(data: dict[str, Any], source: str) -> list[str]:
    """The ``quick`` profile of a raw experiment mapping as overrides (its name gets
    ``-quick`` unless the profile names it); a one-line error when it has none."""
    profile = data.get("quick")
    if not profile:
        raise HarnessError(f"{source}: --quick needs a quick profile in the file (quick: [key=value, ...])")
    if not isinstance(profile, list) or not all(isinstance(o, str) for o in profile):
        raise HarnessError(f"{source}: quick must be a list of key=value overrides, got {profile!r}")
    named = any(o.partition("=")[0].strip() == "name" for o in profile)
    return [*profile, *([] if named else [f"name={data.get('name')}-quick"])]


def load_experiment(path: str | Path, overrides: Sequence[str] = (), quick: bool = False) -> Experiment:
    """Read and validate an experiment file (``overrides`` and ``quick`` as in
    :func:`parse_experiment`)."""
    from advharness.config.yaml_loader import load_file

    p = Path(path)
    if not p.is_file():
        raise HarnessError(f"experiment file not found: {p}")
    return parse_experiment(load_file(p), str(p), overrides, quick)
