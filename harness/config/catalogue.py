"""The canonical attack catalogue: one name and one set of parameters per attack.

Every parameter an adapter passes to a library comes from a resolved spec; library defaults
are never relied upon. Attack-specific parameters have harness defaults listed here, so a
spec resolves to a complete, explicit parameter set that is recorded with every result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from advharness.core.types import ThreatModel

Norm = Literal["linf", "l2", "l1", "l0"]
Kind = Literal["fixed", "minimal"]
#: What a size-limited parameter counts: all values of one input, or its pixels (H x W).
SizeUnit = Literal["features", "pixels"]
LIBRARIES: tuple[str, ...] = ("art", "foolbox", "cleverhans")
FRAMEWORKS: tuple[str, ...] = ("torch", "tensorflow")
#: Short framework names for narrow table headers.
SHORT = {"tensorflow": "tf"}


@dataclass(frozen=True)
class AttackDef:
    """What the harness knows about one attack, independent of any library.

    ``kind`` is ``fixed`` for fixed-budget attacks (``eps`` required, output must stay in the
    eps-ball) and ``minimal`` for minimum-norm attacks (``eps`` optional: success is also
    reported within ``eps`` when it is given). ``common`` names the canonical common
    parameters the attack uses; ``params`` are attack-specific parameters and their defaults.
    """

    name: str
    kind: Kind
    norms: tuple[Norm, ...]
    description: str
    common: frozenset[str] = frozenset()
    params: dict[str, Any] = field(default_factory=dict)
    default_steps: int | None = None
    #: The access level the attack needs; a cell runs with it unless the spec says otherwise.
    threat_model: ThreatModel = "white-box"
    #: Parameters that count input elements: each must not exceed the input's number of
    #: features or pixels (checked against the data before anything runs).
    size_limits: dict[str, SizeUnit] = field(default_factory=dict)
    #: String parameters with a closed set of values (validated in the spec).
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)


_ITER = frozenset({"steps", "step_size"})

CATALOGUE: dict[str, AttackDef] = {
    "fgsm": AttackDef("fgsm", "fixed", ("linf",), "Fast Gradient Sign Method (one step).", frozenset()),
    "fgm": AttackDef("fgm", "fixed", ("l2",), "Fast Gradient Method, L2-normalised step.", frozenset()),
    "bim": AttackDef(
        "bim",
        "fixed",
        ("linf", "l2"),
        "Basic Iterative Method: PGD from the clean input, no random start.",
        _ITER,
        default_steps=10,
    ),
    "pgd": AttackDef(
        "pgd",
        "fixed",
        ("linf", "l2"),
        "Projected Gradient Descent (Madry et al.), optional random start.",
        _ITER | {"random_start", "restarts"},
        default_steps=40,
    ),
    "mim": AttackDef(
        "mim", "fixed", ("linf", "l2"), "Momentum Iterative Method.", _ITER, {"decay": 1.0}, default_steps=10
    ),
    "apgd": AttackDef(
        "apgd",
        "fixed",
        ("linf", "l2"),
        "Auto-PGD (Croce & Hein), adaptive step size; starts randomly.",
        _ITER | {"restarts"},
        {"loss": "ce"},
        default_steps=100,
    ),
    "ddn": AttackDef(
        "ddn",
        "fixed",
        ("l2",),
        "Decoupled Direction and Norm (Rony et al.).",
        frozenset({"steps"}),
        {"init_epsilon": 1.0, "gamma": 0.05},
        default_steps=100,
    ),
    "cw": AttackDef(
        "cw",
        "minimal",
        ("l2",),
        "Carlini & Wagner L2.",
        frozenset({"steps"}),
        {"c": 1.0, "confidence": 0.0, "learning_rate": 0.01, "binary_search_steps": 5},
        default_steps=100,
    ),
    "ead": AttackDef(
        "ead",
        "minimal",
        ("l1",),
        "Elastic-net attack (EAD, Chen et al.).",
        frozenset({"steps"}),
        {
            "c": 1.0,
            "confidence": 0.0,
            "learning_rate": 0.01,
            "binary_search_steps": 5,
            "beta": 0.01,
            "decision_rule": "EN",
        },
        default_steps=100,
    ),
    "deepfool": AttackDef(
        "deepfool",
        "minimal",
        ("l2", "linf"),
        "DeepFool (untargeted).",
        frozenset({"steps"}),
        {"overshoot": 0.02, "candidates": 10},
        default_steps=50,
    ),
    "jsma": AttackDef(
        "jsma",
        "minimal",
        ("l0",),
        "Jacobian-based Saliency Map Attack.",
        frozenset(),
        {"theta": 1.0, "gamma": 0.2},
    ),
    "fmn": AttackDef(
        "fmn",
        "minimal",
        ("linf", "l2", "l1", "l0"),
        "Fast Minimum-Norm attack (Pintor et al.).",
        frozenset({"steps"}),
        {"max_stepsize": 1.0, "min_stepsize": 0.01, "gamma": 0.05, "binary_search_steps": 10},
        default_steps=100,
    ),
    # -- black-box: score-based (scores only) --------------------------------------------
    "square": AttackDef(
        "square",
        "fixed",
        ("linf", "l2"),
        "Square Attack (Andriushchenko et al.).",
        frozenset({"steps"}),
        {"p_init": 0.05},
        default_steps=1000,
        threat_model="score-based",
    ),
    "spsa": AttackDef(
        "spsa",
        "fixed",
        ("linf",),
        "SPSA gradient-estimation attack (Uesato et al.).",
        frozenset({"steps"}),
        {"delta": 0.01, "learning_rate": 0.01, "samples": 128},
        default_steps=100,
        threat_model="score-based",
    ),
    "zoo": AttackDef(
        "zoo",
        "minimal",
        ("l2",),
        "ZOO: zeroth-order C&W (Chen et al.).",
        frozenset({"steps"}),
        {"c": 1.0, "confidence": 0.0, "learning_rate": 0.01, "binary_search_steps": 1, "coordinates": 128},
        default_steps=100,
        threat_model="score-based",
        size_limits={"coordinates": "features"},
    ),
    "simba": AttackDef(
        "simba",
        "minimal",
        ("l2",),
        "SimBA (Guo et al.): random-basis search.",
        frozenset({"steps"}),
        {"basis": "px", "epsilon": 0.2},
        default_steps=1000,
        threat_model="score-based",
    ),
    "pixel": AttackDef(
        "pixel",
        "minimal",
        ("l0",),
        "Pixel attack: differential evolution.",
        frozenset({"steps"}),
        {"pixels": 1},
        default_steps=100,
        threat_model="score-based",
        size_limits={"pixels": "pixels"},
    ),
    "threshold": AttackDef(
        "threshold",
        "fixed",
        ("linf",),
        "Threshold attack: differential evolution in the L-inf ball.",
        frozenset({"steps"}),
        default_steps=100,
        threat_model="score-based",
    ),
    # -- black-box: decision-based (top-1 label only) ----------------------------------
    "noise": AttackDef(
        "noise",
        "fixed",
        ("linf", "l2"),
        "Random noise of norm eps, `draws` draws per sample (a baseline white-box attacks must beat).",
        frozenset(),
        {"distribution": "uniform", "draws": 100},
        threat_model="decision-based",
        choices={"distribution": ("uniform", "gaussian")},
    ),
    "boundary": AttackDef(
        "boundary",
        "minimal",
        ("l2",),
        "Boundary Attack (Brendel et al.).",
        frozenset({"steps"}),
        {"spherical_step": 0.01, "source_step": 0.01, "step_adaptation": 1.5},
        default_steps=1000,
        threat_model="decision-based",
    ),
    "hsj": AttackDef(
        "hsj",
        "minimal",
        ("l2", "linf"),
        "HopSkipJump (Chen et al.).",
        frozenset({"steps"}),
        {"max_evals": 1000, "init_evals": 100, "gamma": 1.0},
        default_steps=40,
        threat_model="decision-based",
    ),
    "geoda": AttackDef(
        "geoda",
        "minimal",
        ("l2",),
        "GeoDA: geometric decision-based attack.",
        frozenset({"steps"}),
        default_steps=4000,
        threat_model="decision-based",
    ),
    "signopt": AttackDef(
        "signopt",
        "minimal",
        ("l2",),
        "Sign-OPT (Cheng et al.).",
        frozenset({"steps"}),
        default_steps=1000,
        threat_model="decision-based",
    ),
    "gaussian_blur": AttackDef(
        "gaussian_blur",
        "minimal",
        ("linf",),
        "Gaussian blur, line search on its strength.",
        frozenset({"steps"}),
        default_steps=1000,
        threat_model="decision-based",
    ),
    "salt_and_pepper": AttackDef(
        "salt_and_pepper",
        "minimal",
        ("l2",),
        "Salt-and-pepper noise, increasing until misclassified.",
        frozenset({"steps"}),
        default_steps=1000,
        threat_model="decision-based",
    ),
    "contrast": AttackDef(
        "contrast",
        "minimal",
        ("l2",),
        "Contrast reduction, line search (Foolbox).",
        frozenset({"steps"}),
        default_steps=1000,
        threat_model="decision-based",
    ),
    "blended_noise": AttackDef(
        "blended_noise",
        "minimal",
        ("l2",),
        "Blend with uniform noise, line search (Foolbox).",
        frozenset({"steps"}),
        default_steps=1000,
        threat_model="decision-based",
    ),
}

#: Attack-specific parameters that must be strictly positive when given.
POSITIVE_PARAMS = frozenset(
    {
        "c",
        "learning_rate",
        "binary_search_steps",
        "candidates",
        "max_stepsize",
        "min_stepsize",
        "init_epsilon",
        "theta",
        "p_init",
        "delta",
        "samples",
        "coordinates",
        "epsilon",
        "pixels",
        "spherical_step",
        "source_step",
        "step_adaptation",
        "max_evals",
        "init_evals",
        "gamma",
        "draws",
    }
)


#: Attack-specific parameters that must be whole numbers (counts).
INTEGER_PARAMS = frozenset({"draws"})


#: One image of each dataset, (C, H, W), as published: experiment files are checked against
#: it before anything is loaded (and runs again against the images actually loaded).
INPUT_SHAPES: dict[str, tuple[int, int, int]] = {
    "digits": (1, 8, 8),
    "mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
}


#: Query levels at which success is reported when a spec names none.
DEFAULT_QUERY_LEVELS: tuple[int, ...] = (100, 1000, 10000)


#: Default :attr:`Experiment.clean_accuracy_floor`: well above chance for 10 classes.
CLEAN_ACCURACY_FLOOR = 0.5


Layer = tuple[Any, ...]  # ("conv", out_channels, kernel) | ("pool", size) | ("relu",)
#                          ("flatten",) | ("dense", units)


@dataclass(frozen=True)
class Recipe:
    """A dataset, an architecture and how to train it. Bump ``version`` on any change."""

    name: str
    dataset: str
    input_shape: tuple[int, int, int]  # (C, H, W)
    layers: tuple[Layer, ...]
    epochs: int
    batch_size: int
    lr: float
    seed: int = 0
    version: int = 1
    nb_classes: int = 10

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "optimizer": "adam",
            "loss": "cross_entropy",
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "seed": self.seed,
        }


RECIPES: dict[str, Recipe] = {
    "digits_mlp": Recipe(
        "digits_mlp",
        "digits",
        (1, 8, 8),
        (("flatten",), ("dense", 64), ("relu",), ("dense", 10)),
        epochs=30,
        batch_size=32,
        lr=3e-3,
    ),
    "digits_cnn": Recipe(
        "digits_cnn",
        "digits",
        (1, 8, 8),
        (("conv", 16, 3), ("relu",), ("conv", 32, 3), ("relu",), ("pool", 2), ("flatten",), ("dense", 10)),
        epochs=20,
        batch_size=32,
        lr=3e-3,
    ),
    # softmax (multinomial logistic) regression: Goodfellow et al. 2015's shallow classifier
    "mnist_softmax": Recipe(
        "mnist_softmax",
        "mnist",
        (1, 28, 28),
        (("flatten",), ("dense", 10)),
        epochs=20,
        batch_size=64,
        lr=1e-3,
    ),
    "mnist_cnn": Recipe(
        "mnist_cnn",
        "mnist",
        (1, 28, 28),
        (
            ("conv", 16, 5),
            ("relu",),
            ("pool", 2),
            ("conv", 32, 5),
            ("relu",),
            ("pool", 2),
            ("flatten",),
            ("dense", 10),
        ),
        epochs=4,
        batch_size=64,
        lr=2e-3,
    ),
}
