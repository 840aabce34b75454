"""ART black-box attacks (score-based and decision-based) for the ART adapter.

These only ever call ``estimator.predict``: under ``model.with_access(...)`` the cached ART
estimator wraps the query-only oracle ``model.counted`` (logits for score-based, one-hot
top-1 labels for decision-based), so every query is counted and a gradient request would be
a recorded threat-model violation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from advharness.adapters.art.common import CONVERTERS, generate
from advharness.adapters.base import AttackOutput, AttackRequest, Impl
from advharness.core.errors import Unsupported
from advharness.models.base import WrappedModel
from advharness.models.layout import image_size

_NORMS: dict[str, float] = {"linf": np.inf, "l2": 2}


UNSEEDED_RNG = (
    "ART draws the starting point from an unseeded np.random.RandomState() (OS "
    "entropy: {where}), so its results are not reproducible; for the call, an "
    "unseeded RandomState takes its seed from NumPy's global generator, which the "
    "harness seeds per cell"
)


@contextmanager
def seeded_random_state() -> Iterator[None]:
    """For the block, ``np.random.RandomState()`` without a seed draws its seed from NumPy's
    global generator (ART's HopSkipJump and BoundaryAttack create one per sample)."""
    original = np.random.RandomState

    class Seeded(original):  # type: ignore[misc,valid-type]
        def __init__(self, seed: Any = None) -> None:
            super().__init__(np.random.randint(2**31 - 1) if seed is None else seed)

    np.random.RandomState = Seeded  # type: ignore[misc]
    try:
        yield
    finally:
        np.random.RandomState = original  # type: ignore[misc]


def _softmax_estimator(model: WrappedModel) -> Any:
    """An ART estimator whose outputs are ``softmax(model.counted(x))`` (for SimBA).

    Queries still go through ``model.counted`` (counted; under a score-based threat model
    it is the same gradient-refusing oracle); only the scores' form changes.
    """

    def build() -> Any:
        if model.framework == "torch":
            import torch

            net: Any = torch.nn.Sequential(model.counted, torch.nn.Softmax(dim=1)).eval()
        else:
            import tensorflow as tf

            counted = model.counted

            def softmax_net(x: Any, training: bool = False) -> Any:
                return tf.nn.softmax(counted(x, training=False), axis=1)

            net = softmax_net

        return CONVERTERS[model.framework](model, net)

    return model.library_form("art-softmax", build)


#: ART's L2 Square Attack starts from a 5 x 5 grid of tiles ``height // 5`` pixels high.
SQUARE_L2_MIN_HEIGHT = 10


def square_unsupported(layout: str, shape: tuple[int, ...], norm: str) -> str | None:
    """Why ART's ``SquareAttack`` cannot attack inputs of ``shape`` (one batch, in the
    model's ``layout``) in ``norm``, or None."""
    if layout not in ("NCHW", "NHWC"):
        return (
            "ART's SquareAttack needs image inputs (N, C, H, W) or (N, H, W, C); this "
            "model takes flat vectors"
        )
    height, _ = image_size(layout, shape[1:])
    if norm == "l2" and height < SQUARE_L2_MIN_HEIGHT:
        return (
            f"ART's L2 SquareAttack needs images at least {SQUARE_L2_MIN_HEIGHT} pixels "
            f"high, these are {height}: its initialisation tiles the image 5 x 5 with "
            f"tiles height // 5 = {height // 5} pixel(s) high and normalises each tile's "
            "perturbation by its norm, which is 0 for a 1-pixel tile (0/0 = NaN, "
            "square_attack.py:287-292): the attack would start from, or skip, a NaN step"
        )
    return None


def _square(request: AttackRequest) -> AttackOutput:
    """Square Attack (untargeted): ``SquareAttack`` with ART's margin loss on the logits."""
    s = request.spec
    reason = square_unsupported(request.model.layout, request.x.shape, s.norm)
    if reason:
        raise Unsupported(reason)
    kwargs = {
        "norm": _NORMS[s.norm],
        "adv_criterion": None,
        "loss": None,
        "max_iter": s.steps,
        "eps": s.eps,
        "p_init": float(s.params["p_init"]),
        "nb_restarts": 1,
        "batch_size": request.batch_size,
        "verbose": False,
    }
    return generate(
        request,
        "SquareAttack",
        kwargs,
        [
            "adv_criterion=None/loss=None: ART's untargeted argmax criterion and margin loss on the scores",
            "nb_restarts=1 (restarts are the harness's)",
        ],
    )


def _zoo(request: AttackRequest) -> AttackOutput:
    """ZOO: ``ZooAttack`` (coordinate-wise finite differences, C&W loss, Adam)."""
    s, p = request.spec, request.spec.params
    kwargs = {
        "confidence": float(p["confidence"]),
        "targeted": s.targeted,
        "learning_rate": float(p["learning_rate"]),
        "max_iter": s.steps,
        "binary_search_steps": int(p["binary_search_steps"]),
        "initial_const": float(p["c"]),
        "abort_early": False,
        "use_resize": False,
        "use_importance": False,
        "nb_parallel": int(p["coordinates"]),
        "batch_size": 1,
        "variable_h": 1e-4,
        "verbose": False,
    }
    return generate(
        request,
        "ZooAttack",
        kwargs,
        [
            "c -> initial_const; coordinates -> nb_parallel (coordinates estimated "
            "per step); batch_size=1 (ART's ZOO optimises one sample at a time)",
            "abort_early/use_resize/use_importance off; variable_h=1e-4 (ART's "
            "finite-difference step, no canonical counterpart)",
        ],
    )


def _threshold(request: AttackRequest) -> AttackOutput:
    """Threshold attack: ``ThresholdAttack``; ART's ``th`` is an L-inf bound on a 0-255 scale."""
    s = request.spec
    lo, hi = request.model.bounds
    assert s.eps is not None
    th = int(np.floor(s.eps / (hi - lo) * 255.0 + 1e-6))
    if th < 1:
        raise ValueError(
            f"ThresholdAttack: eps={s.eps:g} is below one 0-255 grey level "
            f"({(hi - lo) / 255:g} in input units); ART needs th >= 1"
        )
    kwargs = {"th": th, "es": 1, "max_iter": s.steps, "targeted": s.targeted, "verbose": False}
    return generate(
        request,
        "ThresholdAttack",
        kwargs,
        [
            f"ART rescales inputs to 0-255: eps={s.eps:g} -> th=floor(eps/"
            f"(hi-lo)*255)={th} grey levels (rounded down, stays in the eps-ball)",
            "es=1: differential evolution (ART's default es=0 is CMA-ES, which needs "
            "the optional 'cma' package, not installed)",
            "samples not fooled are returned unchanged",
        ],
    )


def _pixel(request: AttackRequest) -> AttackOutput:
    """Pixel attack: ``PixelAttack``; ``th`` is the number of pixels changed (differential evolution)."""
    s = request.spec
    kwargs = {
        "th": int(s.params["pixels"]),
        "es": 1,
        "max_iter": s.steps,
        "targeted": s.targeted,
        "verbose": False,
    }
    return generate(
        request,
        "PixelAttack",
        kwargs,
        [
            "pixels -> th (number of pixels changed; all channels of a pixel change)",
            "es=1: differential evolution (ART's PixelAttack default)",
            "samples not fooled are returned unchanged",
        ],
    )


def _boundary(request: AttackRequest) -> AttackOutput:
    """Boundary attack: ``BoundaryAttack`` with ``targeted`` always explicit (ART defaults True)."""
    s, p = request.spec, request.spec.params
    adapt = float(p["step_adaptation"])
    if adapt <= 1.0:
        raise ValueError(
            f"step_adaptation must be > 1 (ART's step_adapt = 1/step_adaptation "
            f"must lie in (0, 1)), got {adapt:g}"
        )
    kwargs = {
        "batch_size": request.batch_size,
        "targeted": s.targeted,
        "delta": float(p["spherical_step"]),
        "epsilon": float(p["source_step"]),
        "step_adapt": 1.0 / adapt,
        "max_iter": s.steps,
        "num_trial": 25,
        "sample_size": 20,
        "init_size": 100,
        "min_epsilon": 0.0,
        "verbose": False,
    }
    notes = [
        "spherical_step -> delta, source_step -> epsilon, 1/step_adaptation -> step_adapt "
        "(ART multiplies the steps by it when too few trials succeed and divides when many "
        "do; 1.5 -> 0.667, ART's default)",
        "num_trial=25, sample_size=20, init_size=100, min_epsilon=0: ART's values, no canonical counterpart",
        "ART's BoundaryAttack defaults to targeted=True; passed explicitly",
        UNSEEDED_RNG.format(where="boundary.py:389"),
    ]
    with seeded_random_state():
        return generate(request, "BoundaryAttack", kwargs, notes)


def _hsj(request: AttackRequest) -> AttackOutput:
    """HopSkipJump: ``HopSkipJump`` (L2 or L-inf)."""
    s, p = request.spec, request.spec.params
    kwargs = {
        "batch_size": request.batch_size,
        "targeted": s.targeted,
        "norm": _NORMS[s.norm],
        "max_iter": s.steps,
        "max_eval": int(p["max_evals"]),
        "init_eval": int(p["init_evals"]),
        "init_size": 100,
        "verbose": False,
    }
    notes = [
        "max_evals -> max_eval, init_evals -> init_eval; init_size=100 (ART's value: "
        "random starts tried to find an initial adversarial)",
        "ART's HopSkipJump has no gamma parameter (fixed theta); canonical gamma unused",
        UNSEEDED_RNG.format(where="hop_skip_jump.py:295"),
    ]
    with seeded_random_state():
        return generate(request, "HopSkipJump", kwargs, notes)


def _simba(request: AttackRequest) -> AttackOutput:
    """SimBA: ``SimBA`` on softmax scores (ART refuses logits)."""
    s, p = request.spec, request.spec.params
    kwargs = {
        "attack": str(p["basis"]),
        "max_iter": s.steps,
        "order": "random",
        "epsilon": float(p["epsilon"]),
        "freq_dim": 4,
        "stride": 1,
        "targeted": s.targeted,
        "batch_size": 1,
        "verbose": False,
    }
    notes = [
        "ART SimBA requires probability outputs: its estimator wraps softmax(model.counted "
        "(x)) (same counted score oracle, separate cached estimator)",
        "basis -> attack ('px' pixel or 'dct' basis); order='random', freq_dim=4, stride=1 "
        "(ART's values; freq_dim/stride only used by 'dct')",
        "batch_size=1: ART's SimBA has no batch processing",
    ]
    return generate(request, "SimBA", kwargs, notes, estimator=_softmax_estimator(request.model))


def _signopt(request: AttackRequest) -> AttackOutput:
    """Sign-OPT (untargeted): ``SignOPTAttack`` with ART's recommended untargeted settings."""
    s = request.spec
    kwargs = {
        "targeted": False,
        "epsilon": 0.001,
        "num_trial": 100,
        "max_iter": s.steps,
        "query_limit": 20000,
        "k": 200,
        "alpha": 0.2,
        "beta": 0.001,
        "eval_perform": False,
        "batch_size": request.batch_size,
        "verbose": False,
    }
    return generate(
        request,
        "SignOPTAttack",
        kwargs,
        [
            "epsilon/num_trial/query_limit/k/alpha/beta = ART's untargeted values, no "
            "canonical counterpart; query_limit caps queries per sample",
            "targeted=False explicit (ART defaults to True)",
        ],
    )


_GEODA = (
    "GeoDA.generate fails on numpy 2: '`np.mat` was removed in the NumPy 2.0 release' "
    "(geometric_decision_based_attack.py:160)"
)


def _geoda(request: AttackRequest) -> AttackOutput:
    """GeoDA: ``GeoDA``; marked broken (numpy 2), kept so the broken check runs the real call."""
    s = request.spec
    kwargs = {
        "batch_size": request.batch_size,
        "norm": _NORMS[s.norm],
        "sub_dim": 10,
        "max_iter": s.steps,
        "bin_search_tol": 0.1,
        "lambda_param": 0.6,
        "sigma": 0.0002,
        "verbose": False,
    }
    return generate(request, "GeoDA", kwargs, ["untargeted only; y = labels"])


_BOTH = ("linf", "l2")
_NO_TARGET = "ART's {} has no targeted mode"

BLACKBOX_IMPLS: dict[str, Impl] = {
    "square": Impl(
        _BOTH,
        _square,
        targeted=False,
        why_not_targeted=_NO_TARGET.format("SquareAttack") + " (no targeted flag)",
    ),
    "zoo": Impl(("l2",), _zoo),
    "threshold": Impl(("linf",), _threshold),
    "pixel": Impl(("l0",), _pixel),
    "boundary": Impl(("l2",), _boundary),
    "hsj": Impl(_BOTH, _hsj),
    "simba": Impl(("l2",), _simba),
    "signopt": Impl(
        ("l2",),
        _signopt,
        targeted=False,
        why_not_targeted="ART's targeted SignOPTAttack needs x_init (samples of "
        "each target class), which the harness does not supply",
    ),
    "geoda": Impl(
        ("l2",),
        _geoda,
        targeted=False,
        broken={"torch": _GEODA, "tensorflow": _GEODA},
        why_not_targeted=_NO_TARGET.format("GeoDA"),
    ),
}
