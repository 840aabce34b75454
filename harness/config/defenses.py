"""Defenses in an experiment file: each one a model variant of an experiment model.

```yaml
defenses:
  - {defense: jpeg, of: digits_cnn-torch, params: {quality: 60}}
  - {defense: adversarial_training, of: digits_cnn-torch,
     params: {method: fgsm_rs, eps: 0.1, step_size: 0.125, steps: 1, ratio: 1.0}}
  - {defense: gaussian_noise, of: digits_cnn-torch, params: {sigma: 0.2}, evaluations: 10, eot: 10}
  - {defense: squeeze_detector, of: digits_cnn-torch, params: {bit_depth: 3, median_window: 2, fpr: 0.05}}
  - {defense: ensemble, members: [digits_cnn-torch, digits_mlp-torch]}
```

A defense is a model like any other (key ``<of>+<defense>`` unless ``name`` says otherwise):
the whole attack pool runs on it. On top of that the harness adds what keeps a defense from
being over-credited (:func:`expand_defenses`): for every preprocessing defense an adaptive
*surrogate* (``<key>@bpda``: the same forward, the identity in the backward pass through the
preprocessing; randomized ones ``<key>@eot<k>``: logits averaged over k draws) that the
white-box pool attacks and the deployed model referees; and transfer attacks crafted on the
undefended model. A randomized defense is refereed ``evaluations`` times per input: a sample
counts as robust only if it survives every evaluation.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from advharness.config.fields import Bool, Float, Int

DefenseKind = Literal[
    "adversarial_training",
    "gaussian_augmentation",
    "label_smoothing",
    "distillation",
    "bounded_relu",
    "ensemble",
    "feature_squeezing",
    "spatial_smoothing",
    "jpeg",
    "gaussian_noise",
    "squeeze_detector",
]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Trained(_Params):
    #: Training epochs (default: the recipe's own).
    epochs: Int | None = Field(default=None, ge=1)


class AdversarialTraining(_Trained):
    """Goodfellow et al. 2015 (``fgsm``: one step from the clean input), Wong et al. 2020
    (``fgsm_rs``: random start, one step) or Madry et al. 2018 (``pgd``)."""

    method: Literal["fgsm", "fgsm_rs", "pgd"]
    eps: Float = Field(gt=0)
    step_size: Float = Field(gt=0)
    steps: Int = Field(ge=1)
    #: Share of each batch replaced by adversarial examples (ART ``AdversarialTrainer``).
    ratio: Float = Field(gt=0, le=1)

    @model_validator(mode="after")
    def _one_step(self) -> AdversarialTraining:
        if self.method in ("fgsm", "fgsm_rs") and self.steps != 1:
            raise ValueError(f"{self.method} takes one step (steps: 1), got steps: {self.steps}")
        return self


class GaussianAugmentation(_Trained):
    sigma: Float = Field(gt=0)
    #: Augmented copies added, as a share of the training set (ART ``GaussianAugmentation``).
    ratio: Float = Field(gt=0)


class LabelSmoothing(_Trained):
    #: The label's probability after smoothing (ART ``LabelSmoothing``).
    max_value: Float = Field(gt=0, lt=1)


class Distillation(_Trained):
    temperature: Float = Field(gt=0)


class BoundedRelu(_Trained):
    cap: Float = Field(gt=0)


class Ensemble(_Params):
    pass


class FeatureSqueezing(_Params):
    bit_depth: Int | None = Field(default=None, ge=1, le=16)
    median_window: Int | None = Field(default=None, ge=2)

    @model_validator(mode="after")
    def _some(self) -> FeatureSqueezing:
        if self.bit_depth is None and self.median_window is None:
            raise ValueError("give bit_depth, median_window or both")
        return self


class SpatialSmoothing(_Params):
    window: Int = Field(ge=2)


class Jpeg(_Params):
    quality: Int = Field(ge=1, le=100)


class GaussianNoise(_Params):
    sigma: Float = Field(gt=0)


class SqueezeDetector(FeatureSqueezing):
    #: False-positive rate on clean data the threshold is set for.
    fpr: Float = Field(gt=0, lt=1)
    #: At most this many clean images of the evaluated split, outside the evaluated ones,
    #: calibrate the threshold.
    calibration_samples: Int = Field(default=1000, ge=10)


#: Each defense's parameters.
PARAMS: dict[str, type[_Params]] = {
    "adversarial_training": AdversarialTraining,
    "gaussian_augmentation": GaussianAugmentation,
    "label_smoothing": LabelSmoothing,
    "distillation": Distillation,
    "bounded_relu": BoundedRelu,
    "ensemble": Ensemble,
    "feature_squeezing": FeatureSqueezing,
    "spatial_smoothing": SpatialSmoothing,
    "jpeg": Jpeg,
    "gaussian_noise": GaussianNoise,
    "squeeze_detector": SqueezeDetector,
}
#: Defenses trained from the base model's recipe (the base must be a recipe model).
TRAINED = ("adversarial_training", "gaussian_augmentation", "label_smoothing", "distillation", "bounded_relu")
#: Inference-time preprocessing (they get adaptive surrogates).
PREPROCESSING = ("feature_squeezing", "spatial_smoothing", "jpeg", "gaussian_noise")
#: Preprocessing that draws random numbers at every forward pass.
RANDOMIZED = ("gaussian_noise",)
#: Evaluations per input of a randomized defense when the file does not say.
DEFAULT_EVALUATIONS = 10


class DefenseConfig(BaseModel):
    """One defense of the ``defenses`` list (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    defense: DefenseKind
    #: The model it defends: an experiment model's key, or an earlier defense's (stacking).
    of: str | None = None
    #: An ensemble's members (model keys, same framework).
    members: list[str] | None = Field(default=None, min_length=2)
    name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    #: Randomized defenses: evaluations per input by the referee (robust = survives all).
    evaluations: Int | None = Field(default=None, ge=1)
    #: Randomized defenses: draws the EOT surrogate averages its logits over.
    eot: Int | None = Field(default=None, ge=2)
    #: Add the adaptive surrogate (BPDA / EOT) of a preprocessing defense.
    adaptive: Bool = True

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        kind = info.data.get("defense")
        if kind is None:
            return v  # the defense itself is reported
        try:
            PARAMS[kind].model_validate(v)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(map(str, err['loc'])) or '(params)'}: {err['msg'].removeprefix('Value error, ')}"
                for err in e.errors()
            )
            raise ValueError(f"{kind} parameters: {problems}") from None
        return v

    @model_validator(mode="after")
    def _consistent(self) -> DefenseConfig:
        if self.defense == "ensemble":
            if self.members is None or self.of is not None:
                raise ValueError("an ensemble names its members (members: [model, model, ...]), not of")
        elif self.of is None or self.members is not None:
            raise ValueError(f"a {self.defense} defense names the model it defends (of: <model key>)")
        randomized = self.defense in RANDOMIZED
        if not randomized and (self.evaluations is not None or self.eot is not None):
            raise ValueError(f"evaluations and eot are for randomized defenses ({', '.join(RANDOMIZED)})")
        return self

    @property
    def resolved_params(self) -> dict[str, Any]:
        """The parameters with every default filled in (what is built and recorded)."""
        return PARAMS[self.defense].model_validate(self.params).model_dump()

    @property
    def key(self) -> str:
        if self.name:
            return self.name
        if self.members is not None:
            return "ensemble(" + ",".join(self.members) + ")"
        return f"{self.of}+{self.defense}"

    @property
    def randomized(self) -> bool:
        return self.defense in RANDOMIZED

    @property
    def resolved_evaluations(self) -> int:
        if not self.randomized:
            return 1
        return self.evaluations if self.evaluations is not None else DEFAULT_EVALUATIONS

    @property
    def resolved_eot(self) -> int:
        """EOT draws of the surrogate (randomized defenses): ``eot``, else ``evaluations``."""
        return self.eot if self.eot is not None else self.resolved_evaluations

    @property
    def surrogate_key(self) -> str | None:
        """The adaptive surrogate's model key, or None (not a preprocessing defense)."""
        if self.defense not in PREPROCESSING or not self.adaptive:
            return None
        return f"{self.key}@eot{self.resolved_eot}" if self.randomized else f"{self.key}@bpda"
