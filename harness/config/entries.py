"""The data and model entries of an experiment file: ``data`` and each ``models`` entry
(a recipe, a factory, a substitute, a RobustBench model, or a defense's variant)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from advharness.config.defenses import DefenseConfig
from advharness.config.fields import Bool, Float, Int
from advharness.config.robustbench import ROBUSTBENCH_FIELDS, fill_robustbench_wrapping
from advharness.core.types import Layout, Outputs


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: Literal["digits", "mnist", "cifar10"] = "digits"
    split: Literal["train", "test"] = "test"
    n_samples: Int = Field(default=64, ge=1)
    offset: Int = Field(default=0, ge=0)
    path: str | None = None
    #: The range models get the pixels in: ``[low, high]``, which every model's ``bounds``
    #: must equal, or ``model``: each model gets them mapped linearly onto its own bounds.
    scale: tuple[float, float] | Literal["model"] = (0.0, 1.0)

    @field_validator("scale", mode="before")
    @classmethod
    def _scale(cls, v: Any) -> Any:
        if isinstance(v, str) and v == "model":
            return v
        if (
            isinstance(v, list | tuple)
            and len(v) == 2
            and all(isinstance(b, int | float) and not isinstance(b, bool) and math.isfinite(b) for b in v)
            and v[0] < v[1]
        ):
            return (float(v[0]), float(v[1]))
        raise ValueError(f"must be [low, high] (finite, low < high) or 'model', got {v!r}")


#: Fields that describe how a factory model is wrapped (not for recipe models).
FACTORY_FIELDS = ("weights", "input_shape", "nb_classes", "bounds", "layout", "outputs")


class ModelConfig(BaseModel):
    """One model: a built-in ``recipe`` in one framework (trained on first use, then cached);
    a user ``factory`` (``package.module:function`` returning a torch or Keras model, optional
    ``weights``, wrapped with ``input_shape``, ``nb_classes``, ``bounds``, ``layout``,
    ``outputs``; see :mod:`advharness.zoo.factory`); a ``robustbench`` model (an architecture
    of the ``robustbench`` package's model zoo, by its name there, ``dataset`` and
    ``threat_model``, with ``weights`` from a local file; see :mod:`advharness.zoo.robustbench`);
    or, with ``substitute_of``, a recipe's architecture trained only from another model's
    answers to ``queries`` queries (ART CopycatCNN; see :mod:`advharness.zoo.substitute`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # first: the factory's check reads it
    framework: Literal["torch", "tensorflow"]
    #: Where the model is evaluated and attacked: ``cpu``, ``cuda`` or ``cuda:N`` (recipes
    #: still train on the CPU); unavailable here: the model's cells are unsupported rows.
    device: str = "cpu"
    recipe: str | None = None
    factory: str | None = None
    robustbench: str | None = None
    dataset: Literal["cifar10"] = "cifar10"
    threat_model: Literal["Linf", "L2", "corruptions"] = "Linf"
    weights: str | None = None
    name: str | None = None
    input_shape: tuple[Annotated[Int, Field(ge=1)], ...] | None = Field(default=None, min_length=1)
    nb_classes: Int | None = Field(default=None, ge=2)
    bounds: tuple[Float, Float] = (0.0, 1.0)
    layout: Layout | None = None
    outputs: Outputs = "logits"
    substitute_of: str | None = None
    queries: Int | None = Field(default=None, ge=1)
    labels_only: Bool = True
    epochs: Int = Field(default=10, ge=1)
    #: Set only on the entries the ``defenses`` section expands to (never in ``models``):
    #: the defense this model variant applies, and whether it is its adaptive surrogate.
    defense: DefenseConfig | None = None
    surrogate: Bool = False

    @model_validator(mode="before")
    @classmethod
    def _robustbench_wrapping(cls, data: Any) -> Any:
        """A RobustBench model's wrapping is fixed: filled in, and a value given that differs
        is refused."""
        return fill_robustbench_wrapping(data)

    @field_validator("device")
    @classmethod
    def _device_spelling(cls, v: str) -> str:
        from advharness.core.frameworks import check_device

        return check_device(v)  # a HarnessError is a ValueError: reported at models[i].device

    @field_validator("recipe")
    @classmethod
    def _known_recipe(cls, v: str | None) -> str | None:
        from advharness.config.catalogue import RECIPES

        if v is not None and v not in RECIPES:
            raise ValueError(f"unknown recipe {v!r}; known: {', '.join(sorted(RECIPES))}")
        return v

    @field_validator("factory")
    @classmethod
    def _importable(cls, v: str | None, info: ValidationInfo) -> str | None:
        from advharness.core.frameworks import framework_available
        from advharness.core.imports import resolve_factory

        # Without its framework installed, the module (which likely imports it) is not
        # imported: the model's cells are unsupported rows naming the extra to install.
        framework = info.data.get("framework")
        if v is not None and (framework is None or framework_available(framework)):
            resolve_factory(v)  # a HarnessError is a ValueError: reported at models[i].factory
        return v

    @field_validator("weights")
    @classmethod
    def _weights_exist(cls, v: str | None) -> str | None:
        if v is not None and not Path(v).is_file():
            raise ValueError(f"file not found: {v}")
        return v

    @field_validator("bounds")
    @classmethod
    def _finite_bounds(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not (math.isfinite(v[0]) and math.isfinite(v[1]) and v[0] < v[1]):
            raise ValueError(f"must be finite with low < high, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _kind(self) -> ModelConfig:
        if self.defense is not None:
            return self  # a defense's variant: built from the model(s) it names
        kinds = [k for k in ("recipe", "factory", "robustbench") if getattr(self, k) is not None]
        if len(kinds) > 1:
            raise ValueError(f"give one of recipe, factory or robustbench, not {' and '.join(kinds)}")
        if not kinds:
            raise ValueError(
                "a model needs recipe (a built-in), factory ('package.module:function') or "
                "robustbench (a RobustBench model name)"
            )
        if self.robustbench is None:
            extra = [f for f in ROBUSTBENCH_FIELDS if getattr(self, f) != type(self).model_fields[f].default]
            if extra:
                raise ValueError(f"{', '.join(extra)}: only for robustbench models")
        else:
            if self.framework != "torch":
                raise ValueError("a RobustBench model is a torch model: framework must be torch")
            if self.weights is None:
                raise ValueError("a RobustBench model needs weights (a local file: nothing is downloaded)")
            if self.substitute_of is not None or self.queries is not None:
                raise ValueError("substitute_of and queries are for recipe models")
            return self
        if self.substitute_of is not None and self.recipe is None:
            raise ValueError("a substitute model needs recipe (the architecture it trains)")
        if self.substitute_of is not None and self.queries is None:
            raise ValueError("a substitute model needs queries (how many target answers it is trained from)")
        if self.substitute_of is None and self.queries is not None:
            raise ValueError("queries is only for substitute models (substitute_of)")
        if self.recipe is not None:
            # not model_fields_set: a dumped experiment (defaults written out) must load again
            extra = [f for f in FACTORY_FIELDS if getattr(self, f) != type(self).model_fields[f].default]
            if extra:
                raise ValueError(f"{', '.join(extra)}: only for factory models (a recipe states its own)")
            return self
        missing = [f for f in ("name", "input_shape", "nb_classes") if getattr(self, f) is None]
        if missing:
            raise ValueError(f"a factory model needs {', '.join(missing)}")
        assert self.input_shape is not None
        dims = len(self.input_shape)
        if dims not in (1, 3):
            raise ValueError(
                f"input_shape must be (C, H, W), (H, W, C) or (features,), got {list(self.input_shape)}"
            )
        if self.layout is not None and (self.layout == "flat") != (dims == 1):
            raise ValueError(f"layout {self.layout} does not fit input_shape {list(self.input_shape)}")
        return self

    @property
    def resolved_layout(self) -> Layout | None:
        """A factory model's layout: as given, else NCHW (torch) / NHWC (Keras) for images
        and flat for vectors; None for recipe models (the recipe states it)."""
        if (self.factory is None and self.robustbench is None) or self.input_shape is None:
            return None
        if self.layout is not None:
            return self.layout
        if len(self.input_shape) == 1:
            return "flat"
        return "NCHW" if self.framework == "torch" else "NHWC"

    @property
    def key(self) -> str:
        if self.name:
            return self.name
        if self.robustbench is not None:
            return f"{self.robustbench}-{self.threat_model}"
        of = f"-of-{self.substitute_of}" if self.substitute_of else ""
        return f"{'substitute-' if of else ''}{self.recipe}-{self.framework}{of}"
