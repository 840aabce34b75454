"""Experiment files (YAML): parsed and validated before anything runs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.catalogue import LIBRARIES
from harness.errors import HarnessError
from harness.spec import AttackSpec

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: Literal["digits", "mnist"] = "digits"
    split: Literal["train", "test"] = "test"
    n_samples: int = Field(default=64, ge=1)
    offset: int = Field(default=0, ge=0)
    path: str | None = None


class ModelConfig(BaseModel):
    """A built-in recipe in one framework (trained on first use, then cached)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recipe: str
    framework: Literal["torch", "tensorflow"]
    name: str | None = None

    @field_validator("recipe")
    @classmethod
    def _known_recipe(cls, v: str) -> str:
        from harness.recipes import RECIPES

        if v not in RECIPES:
            raise ValueError(f"unknown recipe {v!r}; known: {', '.join(sorted(RECIPES))}")
        return v

    @property
    def key(self) -> str:
        return self.name or f"{self.recipe}-{self.framework}"


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    models: list[ModelConfig] = Field(min_length=1)
    libraries: list[str] = Field(default_factory=lambda: list(LIBRARIES), min_length=1)
    attacks: list[AttackSpec] = Field(min_length=1)
    batch_size: int = Field(default=256, ge=1)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("must be letters, digits, '_', '-' or '.', starting with a letter or digit")
        return v

    @field_validator("libraries")
    @classmethod
    def _known_libraries(cls, v: list[str]) -> list[str]:
        for lib in v:
            if lib not in LIBRARIES:
                raise ValueError(f"unknown library {lib!r}; known: {', '.join(LIBRARIES)}")
        if len(set(v)) != len(v):
            raise ValueError("libraries are listed more than once")
        return v

    @model_validator(mode="after")
    def _unique_models(self) -> Experiment:
        keys = [m.key for m in self.models]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"model names must be unique; repeated: {dup}")
        return self


def format_validation_error(err: ValidationError) -> str:
    """One line per problem, each with its location, e.g. ``attacks[3].eps: must be >= 0``."""
    lines = []
    for e in err.errors():
        loc = ""
        for part in e["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        msg = e["msg"].removeprefix("Value error, ")
        msg = msg.replace("Input should be greater than or equal to", "must be >=")
        msg = msg.replace("Input should be greater than", "must be >")
        lines.append(f"{loc or '<experiment>'}: {msg}")
    return "\n".join(lines)


def parse_experiment(data: Any, source: str = "experiment") -> Experiment:
    """Validate a mapping (e.g. parsed YAML) into an :class:`Experiment`."""
    if not isinstance(data, dict):
        raise HarnessError(f"{source}: expected a mapping at the top level")
    try:
        return Experiment.model_validate(data)
    except ValidationError as e:
        lines = format_validation_error(e).splitlines()
        raise HarnessError("\n".join(f"{source}: {line}" for line in lines)) from None


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment file."""
    p = Path(path)
    if not p.is_file():
        raise HarnessError(f"experiment file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise HarnessError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    return parse_experiment(data, str(p))
