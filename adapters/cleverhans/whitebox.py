"""CleverHans gradient attacks: FGM/FGSM, BIM, PGD, MIM (tf2 only) and C&W L2 (torch only).

Each attack is a :class:`Recipe`: the CleverHans function per framework and a builder of its
explicit kwargs (CleverHans does not clip unless ``clip_min``/``clip_max`` are given, and its
torch and tf2 defaults differ, so nothing is left to a default).
"""

from __future__ import annotations

from typing import Any

from advharness.adapters.base import AttackRequest, Impl
from advharness.adapters.cleverhans.common import (
    PACKAGES,
    TF_LOSS,
    Kwargs,
    Recipe,
    attack_path,
    budget_kwargs,
    common_kwargs,
)

_SANITY_NOTE = (
    "sanity_checks=False: CleverHans' check does np.all over a list of tensors, "
    "which raises on numpy>=1.24 (tf2 BIM/Madry default to True)"
)
TF_CW_BROKEN = (
    "TypeError: 'list' object is not callable (tf2/attacks/carlini_wagner_l2.py:168 "
    "calls self.optimizer.variables(); on Keras 3 `variables` is a list). Every call "
    "with binary_search_steps >= 1 fails"
)


def _tf_loss_kw(req: AttackRequest) -> dict[str, Any]:
    """tf2 FGM/PGD take ``loss_fn`` (default None -> sparse softmax CE): pass it explicitly."""
    return {"loss_fn": TF_LOSS} if req.model.framework == "tensorflow" else {}


def _fgm_kwargs(req: AttackRequest) -> Kwargs:
    kw = {**common_kwargs(req), **budget_kwargs(req, False), **_tf_loss_kw(req), "sanity_checks": False}
    return kw, [f"{req.spec.attack} = fast_gradient_method with norm={kw['norm']}", _SANITY_NOTE]


def _pgd_kwargs(req: AttackRequest) -> Kwargs:
    spec, fw = req.spec, req.model.framework
    kw = {
        **common_kwargs(req),
        **budget_kwargs(req, True),
        **_tf_loss_kw(req),
        "rand_init": spec.random_start,
        "rand_minmax": float(spec.eps or 0.0),
        "sanity_checks": False,
    }
    notes = [
        "rand_minmax = eps passed explicitly (tf2 rand_init defaults to None/off, "
        "tf2 madry_et_al rand_minmax to 0.3 absolute)",
        _SANITY_NOTE,
    ]
    if spec.random_start and spec.norm == "l2":
        notes.append(
            "torch L2 random start: uniform in the L-inf cube of radius rand_minmax, "
            "then projected onto the L2 ball (lands near its surface)"
            if fw == "torch"
            else "tf2 L2 random start: uniform in the L2 ball (Calafiore et al.)"
        )
    return kw, notes


def _bim_kwargs(req: AttackRequest) -> Kwargs:
    kw = {
        **common_kwargs(req),
        **budget_kwargs(req, True),
        "rand_init": False,
        "rand_minmax": float(req.spec.eps or 0.0),
        "sanity_checks": False,
    }
    if req.model.framework == "torch":
        note = (
            "CleverHans torch has no BIM: projected_gradient_descent with rand_init=False "
            "is BIM (Kurakin et al.), as its docstring says"
        )
    else:
        note = (
            "tf2 basic_iterative_method always calls PGD with rand_init=False; its "
            "rand_init/rand_minmax arguments are ignored (recorded for completeness)"
        )
    return kw, [note, _SANITY_NOTE]


def _mim_kwargs(req: AttackRequest) -> Kwargs:
    kw = {
        **common_kwargs(req),
        **budget_kwargs(req, True),
        "decay_factor": float(req.spec.params["decay"]),
        "sanity_checks": False,
    }
    return kw, [
        "decay_factor = params.decay; gradient normalised by its mean |g| per sample; "
        "MIM has no eps_iter <= eps assertion (unlike PGD/BIM)",
        _SANITY_NOTE,
    ]


def _cw_kwargs(req: AttackRequest) -> Kwargs:
    p = req.spec.params
    kw = {
        **common_kwargs(req),
        "n_classes": req.model.nb_classes,
        "lr": float(p["learning_rate"]),
        "confidence": float(p["confidence"]),
        "initial_const": float(p["c"]),
        "binary_search_steps": int(p["binary_search_steps"]),
        "max_iterations": int(req.spec.steps or 0),
    }
    return kw, [
        "initial_const = params.c, lr = params.learning_rate, max_iterations = steps; "
        "torch CW has no abort_early and returns the input where it finds nothing",
        "torch CW keeps the Adam state and modifier across binary-search steps",
        "torch CW multiplies const (N,1) by the loss (N,): each sample's effective constant "
        "is the batch mean of all constants, so results depend on the batch composition",
    ]


def _fgm_recipe() -> Recipe:
    return Recipe({fw: attack_path(fw, "fast_gradient_method") for fw in PACKAGES}, _fgm_kwargs)


def _pgd_recipe() -> Recipe:
    return Recipe(
        {fw: attack_path(fw, "projected_gradient_descent") for fw in PACKAGES}, _pgd_kwargs, step_le_eps=True
    )


#: Gradient-based CleverHans attacks (merged with the black-box ones in ``CleverHansAdapter.IMPLS``).
WHITEBOX_IMPLS: dict[str, Impl] = {
    "fgsm": Impl(("linf",), _fgm_recipe()),
    "fgm": Impl(("l2",), _fgm_recipe()),
    "bim": Impl(
        ("linf", "l2"),
        Recipe(
            {
                "torch": attack_path("torch", "projected_gradient_descent"),
                "tensorflow": attack_path("tensorflow", "basic_iterative_method"),
            },
            _bim_kwargs,
            step_le_eps=True,
        ),
    ),
    "pgd": Impl(("linf", "l2"), _pgd_recipe()),
    "mim": Impl(
        ("linf", "l2"),
        Recipe({"tensorflow": attack_path("tensorflow", "momentum_iterative_method")}, _mim_kwargs),
        frameworks=("tensorflow",),
    ),
    "cw": Impl(
        ("l2",),
        Recipe({"torch": attack_path("torch", "carlini_wagner_l2")}, _cw_kwargs),
        broken={"tensorflow": TF_CW_BROKEN},
    ),
}
