"""Foolbox 3.3.4 decision-based attacks: canonical specs -> ``foolbox.attacks`` classes.

Same rules as :mod:`advharness.adapters.foolbox.whitebox`: every constructor parameter explicit (nested init
attacks too), ``library_options["foolbox"]`` merged last, minimization attacks called with
``epsilons=None`` and Foolbox's ``raw`` returned. The Foolbox model is built on
``model.counted``, which under a decision-based cell is the one-hot top-1 oracle, so a Foolbox
internal that asked for a gradient would surface as a threat-model violation.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from advharness.adapters.base import AttackOutput, AttackRequest, Impl
from advharness.adapters.foolbox.common import KwargsAndNotes, run_foolbox
from advharness.config.spec import ResolvedSpec
from advharness.core.errors import Unsupported
from advharness.models.base import WrappedModel
from advharness.models.layout import channel_axis, image_size

CLASSES: dict[str, str] = {
    "boundary": "BoundaryAttack",
    "hsj": "HopSkipJumpAttack",
    "gaussian_blur": "GaussianBlurAttack",
    "salt_and_pepper": "SaltAndPepperNoiseAttack",
    "contrast": "LinearSearchContrastReductionAttack",
    "blended_noise": "LinearSearchBlendedUniformNoiseAttack",
}
NORMS: dict[str, tuple[str, ...]] = {
    "boundary": ("l2",),
    "hsj": ("l2", "linf"),
    "gaussian_blur": ("linf",),
    "salt_and_pepper": ("l2",),
    "contrast": ("l2",),
    "blended_noise": ("l2",),
}

#: The init attack Foolbox itself falls back to (boundary_attack.py:112, hop_skip_jump.py:113).
INIT_DIRECTIONS, INIT_STEPS = 1000, 50
NO_TARGETED_INIT = (
    "a targeted run needs a starting point of the target class for every sample: Foolbox "
    "raises ValueError('init_attack failed ...') unless all of them are adversarial "
    "(boundary_attack.py:127-133, hop_skip_jump.py:126-132); the only init attack is uniform "
    "noise, which lands in a given target class by chance, and the adapter has no "
    "target-class images to pass as starting_points"
)
NO_TARGETED_LINE_SEARCH = (
    "the criterion is only the stop test of a line search along a fixed direction "
    "({what}), which never aims at the target class"
)
INIT_MUST_SUCCEED = (
    "Foolbox raises ValueError if its init attack leaves any sample non-adversarial; that error is not caught"
)


def _distance(norm: str) -> Any:
    import foolbox

    return {"l2": foolbox.distances.l2, "linf": foolbox.distances.linf}[norm]


def _init_attack(norm: str) -> tuple[Any, str]:
    import foolbox

    kwargs = {"distance": _distance(norm), "directions": INIT_DIRECTIONS, "steps": INIT_STEPS}
    attack = foolbox.attacks.LinearSearchBlendedUniformNoiseAttack(**kwargs)
    return attack, (
        f"init_attack=LinearSearchBlendedUniformNoiseAttack(distance={norm}, "
        f"directions={INIT_DIRECTIONS}, steps={INIT_STEPS}): Foolbox's own "
        "fallback made explicit; its queries are counted; " + INIT_MUST_SUCCEED
    )


def _boundary(spec: ResolvedSpec, model: WrappedModel) -> KwargsAndNotes:
    p = spec.params
    init, note = _init_attack(spec.norm)
    kwargs = {
        "init_attack": init,
        "steps": int(spec.steps or 0),
        "spherical_step": float(p["spherical_step"]),
        "source_step": float(p["source_step"]),
        "source_step_convergance": 1e-7,
        "step_adaptation": float(p["step_adaptation"]),
        "tensorboard": False,
        "update_stats_every_k": 10,
    }
    return kwargs, [
        note,
        "source_step_convergance=1e-7 and update_stats_every_k=10 are "
        "Foolbox's values, stated explicitly (no canonical parameter)",
        "all samples stop once every source step is below source_step_convergance",
    ]


def _hsj(spec: ResolvedSpec, model: WrappedModel) -> KwargsAndNotes:
    p = spec.params
    init, note = _init_attack(spec.norm)
    kwargs = {
        "init_attack": init,
        "steps": int(spec.steps or 0),
        "initial_gradient_eval_steps": int(p["init_evals"]),
        "max_gradient_eval_steps": int(p["max_evals"]),
        "stepsize_search": "geometric_progression",
        "gamma": float(p["gamma"]),
        "tensorboard": False,
        "constraint": spec.norm,
    }
    return kwargs, [
        note,
        "init_evals -> initial_gradient_eval_steps, max_evals -> "
        "max_gradient_eval_steps; gradient-estimation evals grow as "
        "init_evals*sqrt(step+1) up to max_evals",
        f"norm -> constraint={spec.norm!r}",
    ]


def _blur(spec: ResolvedSpec, model: WrappedModel) -> KwargsAndNotes:
    axis = channel_axis(model.layout)
    if axis is None:
        raise Unsupported(
            "foolbox gaussian_blur needs image inputs (NCHW or NHWC); "
            f"model {model.name!r} has layout {model.layout}"
        )
    h, w = image_size(model.layout, model.input_shape)
    kwargs = {
        "distance": _distance("linf"),
        "steps": int(spec.steps or 0),
        "channel_axis": axis,
        "max_sigma": float(max(h, w)),
    }
    return kwargs, [
        "line search over sigma in [0, max_sigma] with max_sigma=max(H, W) "
        "(Foolbox's own rule, stated explicitly); distance=linf picks the "
        "least-blurred adversarial"
    ]


def _salt_and_pepper(spec: ResolvedSpec, model: WrappedModel) -> KwargsAndNotes:
    axis = channel_axis(model.layout)
    kwargs = {"steps": int(spec.steps or 0), "across_channels": axis is not None, "channel_axis": axis}
    return kwargs, [
        "noise probability grows linearly over `steps`; Foolbox keeps the "
        "smallest-L2 adversarial (saltandpepper.py:95)",
        "across_channels: one noise mask shared by all channels of a pixel"
        if axis is not None
        else "flat inputs: noise drawn per feature",
    ]


def _contrast(spec: ResolvedSpec, model: WrappedModel) -> KwargsAndNotes:
    return {"distance": _distance("l2"), "steps": int(spec.steps or 0), "target": 0.5}, [
        "linear search blending toward mid-grey (target=0.5 of the bounds range)"
    ]


def _blended_noise(spec: ResolvedSpec, model: WrappedModel) -> KwargsAndNotes:
    return {"distance": _distance("l2"), "directions": INIT_DIRECTIONS, "steps": int(spec.steps or 0)}, [
        f"directions={INIT_DIRECTIONS} uniform-noise draws to find an adversarial one, then a "
        "linear search of `steps` blends; Foolbox only warns when no draw is adversarial and "
        "returns the input for those samples"
    ]


def _run(
    request: AttackRequest, translate: Callable[[ResolvedSpec, WrappedModel], KwargsAndNotes]
) -> AttackOutput:
    """Translate the spec (the model's layout matters for blur/noise) and run it."""
    kwargs, notes = translate(request.spec, request.model)
    return run_foolbox(request, CLASSES[request.spec.attack], kwargs, notes)


def _impl(attack: str, translate: Callable[[ResolvedSpec, WrappedModel], KwargsAndNotes], **kw: Any) -> Impl:
    return Impl(norms=NORMS[attack], run=partial(_run, translate=translate), **kw)


def _line(what: str) -> dict[str, Any]:
    return {"targeted": False, "why_not_targeted": NO_TARGETED_LINE_SEARCH.format(what=what)}


#: Decision-based Foolbox attacks (merge into ``FoolboxAdapter.IMPLS``).
BLACKBOX_IMPLS: dict[str, Impl] = {
    "boundary": _impl("boundary", _boundary, targeted=False, why_not_targeted=NO_TARGETED_INIT),
    "hsj": _impl("hsj", _hsj, targeted=False, why_not_targeted=NO_TARGETED_INIT),
    "gaussian_blur": _impl("gaussian_blur", _blur, **_line("more Gaussian blur")),
    "salt_and_pepper": _impl("salt_and_pepper", _salt_and_pepper, **_line("more salt-and-pepper noise")),
    "contrast": _impl("contrast", _contrast, **_line("less contrast")),
    "blended_noise": _impl("blended_noise", _blended_noise, **_line("toward one uniform-noise image")),
}
