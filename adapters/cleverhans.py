"""CleverHans 4.0.0 adapter: function-style attacks on the wrapped model's counted callable.

CleverHans attacks are plain functions of ``model_fn(x) -> logits``. The ``model_fn`` is
``model.counted``, so every query is counted. Every parameter that affects the result is
passed explicitly (CleverHans does not clip unless ``clip_min``/``clip_max`` are given, and its
torch and tf2 defaults differ), ``library_options["cleverhans"]`` is merged last, and the
whole call is recorded in a :class:`LibraryCall`. CleverHans v4 has no DeepFool, JSMA, EAD,
APGD, FMN or DDN; those are absent from ``IMPLS`` so the base class reports them.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from advharness.adapters.base import Adapter, AttackOutput, AttackRequest, Impl, LibraryCall
from advharness.core.errors import HarnessError, Unsupported
from advharness.models.base import WrappedModel

_NORM: dict[str, float | int] = {"linf": np.inf, "l2": 2}
_PKG = {"torch": "cleverhans.torch.attacks", "tensorflow": "cleverhans.tf2.attacks"}
_TF_LOSS = "tf.nn.sparse_softmax_cross_entropy_with_logits"
_SET_BY_HARNESS = frozenset({"model_fn", "x", "y", "y_target", "image_target"})

_SANITY_NOTE = (
    "sanity_checks=False: CleverHans' check does np.all over a list of tensors, "
    "which raises on numpy>=1.24 (tf2 BIM/Madry default to True)"
)
_TF_CW_BROKEN = (
    "TypeError: 'list' object is not callable (tf2/attacks/carlini_wagner_l2.py:168 "
    "calls self.optimizer.variables(); on Keras 3 `variables` is a list). Every call "
    "with binary_search_steps >= 1 fails"
)

_TF_SPSA_BROKEN = (
    "ValueError: Argument(s) not recognized: {'lr': 0.01} (tf2/attacks/spsa.py:98: "
    "SPSAAdam calls keras Adam.__init__(lr=...); Keras 3 only takes learning_rate). "
    "Every call fails; tf2 SPSA also accepts batch size 1 only"
)
_HSJ_LINF_TYPEERROR = "TypeError: min() received an invalid combination of arguments - got (Tensor, float)"

Kwargs = tuple[dict[str, Any], list[str]]


def _path(framework: str, module: str, function: str | None = None) -> str:
    """Dotted path of a CleverHans attack function."""
    return f"{_PKG[framework]}.{module}.{function or module}"


def _import(path: str) -> Callable[..., Any]:
    """Import a function from its dotted path (CleverHans' attack packages export nothing)."""
    module, _, name = path.rpartition(".")
    return cast(Callable[..., Any], getattr(importlib.import_module(module), name))


# -- live objects per framework (chosen by dict, imported lazily) ---------------------------
def _torch_labels(y: np.ndarray, x: Any) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)).to(x.device)


def _tf_labels(y: np.ndarray, x: Any) -> Any:
    import tensorflow as tf

    return tf.convert_to_tensor(np.asarray(y, dtype=np.int64))


def _torch_numpy(t: Any) -> np.ndarray:
    return cast(np.ndarray, t.detach().cpu().numpy())


def _tf_numpy(t: Any) -> np.ndarray:
    return np.asarray(t)


def _tf_loss() -> Any:
    import tensorflow as tf

    return tf.nn.sparse_softmax_cross_entropy_with_logits


_LABELS: dict[str, Callable[[np.ndarray, Any], Any]] = {  # int64 labels beside inputs x
    "torch": _torch_labels,
    "tensorflow": _tf_labels,
}
_TO_NUMPY: dict[str, Callable[[Any], np.ndarray]] = {"torch": _torch_numpy, "tensorflow": _tf_numpy}


# -- kwargs builders: JSON-able kwargs (placeholders for live objects) + notes ----------------
def _common(req: AttackRequest) -> dict[str, Any]:
    """model_fn, x, clip range and labels/targets, shared by every attack."""
    lo, hi = req.model.bounds
    return {
        "model_fn": "<model_fn>",
        "x": "inputs",
        "clip_min": lo,
        "clip_max": hi,
        "y": "targets" if req.spec.targeted else "labels",
        "targeted": req.spec.targeted,
    }


def _budget(req: AttackRequest, iterative: bool) -> dict[str, Any]:
    """eps, norm and (for iterative attacks) eps_iter / nb_iter."""
    spec = req.spec
    out: dict[str, Any] = {"eps": float(spec.eps or 0.0), "norm": _NORM[spec.norm]}
    if iterative:
        out |= {"eps_iter": float(spec.step_size or 0.0), "nb_iter": int(spec.steps or 0)}
    return out


def _tf_loss_kw(req: AttackRequest) -> dict[str, Any]:
    """tf2 FGM/PGD take ``loss_fn`` (default None -> sparse softmax CE): pass it explicitly."""
    return {"loss_fn": _TF_LOSS} if req.model.framework == "tensorflow" else {}


def _fgm_kwargs(req: AttackRequest) -> Kwargs:
    kw = {**_common(req), **_budget(req, False), **_tf_loss_kw(req), "sanity_checks": False}
    return kw, [f"{req.spec.attack} = fast_gradient_method with norm={kw['norm']}", _SANITY_NOTE]


def _pgd_kwargs(req: AttackRequest) -> Kwargs:
    spec, fw = req.spec, req.model.framework
    kw = {
        **_common(req),
        **_budget(req, True),
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
        **_common(req),
        **_budget(req, True),
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
        **_common(req),
        **_budget(req, True),
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
        **_common(req),
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


def _spsa_kwargs(req: AttackRequest) -> Kwargs:
    p = req.spec.params
    kw = {
        **_common(req),
        "eps": float(req.spec.eps or 0.0),
        "nb_iter": int(req.spec.steps or 0),
        "norm": _NORM[req.spec.norm],
        "early_stop_loss_threshold": None,
        "learning_rate": float(p["learning_rate"]),
        "delta": float(p["delta"]),
        "spsa_samples": int(p["samples"]),
        "spsa_iters": 1,
        "is_debug": False,
        "sanity_checks": False,
    }
    return kw, [
        "spsa_samples = params.samples; torch SPSA evaluates 2 * spsa_samples mirrored (+/- delta) "
        "inputs per step plus one loss query, one sample at a time (it loops over the batch)",
        "score-based: only logits are queried (margin logit loss, Adam on the SPSA estimate); "
        "starts from a uniform random point in the eps-cube (torch RNG)",
        "early_stop_loss_threshold=None: all nb_iter steps run",
        "sanity_checks=False: the final asserts only re-check bounds and the eps-ball, "
        "which the harness's referee checks itself",
    ]


def _hsj_kwargs(req: AttackRequest) -> Kwargs:
    p, spec = req.spec.params, req.spec
    lo, hi = req.model.bounds
    constraint = _NORM[spec.norm]
    kw: dict[str, Any] = {
        "model_fn": "<model_fn>",
        "x": "inputs",
        "norm": constraint,
        "y_target": "targets" if spec.targeted else None,
        "image_target": "nearest input classified as the target" if spec.targeted else None,
        "initial_num_evals": int(p["init_evals"]),
        "max_num_evals": int(p["max_evals"]),
        "stepsize_search": "geometric_progression",
        "num_iterations": int(spec.steps or 0),
        "gamma": float(p["gamma"]),
        "constraint": constraint,
        "batch_size": max(1, int(req.batch_size)),
        "verbose": False,
        "clip_min": lo,
        "clip_max": hi,
    }
    notes = [
        "norm is ignored by CleverHans torch HSJA; constraint (2 or np.inf, compared with ==) "
        "chooses the geometry; both are passed with the same value",
        "max_num_evals = params.max_evals, initial_num_evals = params.init_evals, "
        "num_iterations = steps; verbose=False (True prints every iteration)",
        "decision-based: HSJA only takes the argmax of model_fn, so the one-hot oracle output "
        "is enough; it attacks one sample at a time",
    ]
    if spec.norm == "linf":
        notes.append(
            "constraint=np.inf with a float gamma crashes (hop_skip_jump_attack.py:291 "
            f"torch.min(tensor, theta): {_HSJ_LINF_TYPEERROR}); gamma is passed as a "
            "0-d float32 tensor on the model's device so theta = gamma / d^2 is a "
            "tensor (same value)"
        )
    if spec.targeted:
        notes.append(
            "targeted: y_target = target class indices (despite the docstring's "
            "one-hot) and image_target = the nearest (attack norm) image of the "
            "attacker's pool (the cell's other inputs) that the model classifies as "
            "the target (one counted query per pool image to find them); inputs "
            "already classified as the target, or with no such image, are returned "
            "unchanged"
        )
    else:
        notes.append(
            "untargeted HSJA takes no labels: it leaves the model's own top-1 class "
            "(one extra query per sample) and initialises from blended uniform noise"
        )
    return kw, notes


def _predict_counted(model_fn: Any, model: WrappedModel, x: np.ndarray, bs: int) -> np.ndarray:
    """Top-1 labels of ``x`` through the (counted) oracle, in chunks of ``bs``."""
    import torch

    with torch.no_grad():
        outs = [
            _torch_numpy(model_fn(model.to_tensor(x[i : i + bs]))).argmax(1) for i in range(0, len(x), bs)
        ]
    return np.concatenate(outs) if outs else np.zeros(0, np.int64)


def _hsj_start_images(req: AttackRequest, model_fn: Any, bs: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The attacker's pool and, per row, the index in it of the nearest image classified as
    the row's target (-1: none, or the row is already classified as its target)."""
    assert req.targets is not None
    pred = _predict_counted(model_fn, req.model, req.x, bs)
    pool = req.x if req.pool is None else req.pool
    pool_pred = pred if req.pool is None else _predict_counted(model_fn, req.model, pool, bs)
    flat = req.x.reshape(len(req.x), -1).astype(np.float64)
    pool_flat = pool.reshape(len(pool), -1).astype(np.float64)
    order = np.inf if req.spec.norm == "linf" else 2
    start = np.full(len(req.x), -1, dtype=np.int64)
    already = none = 0
    for i, t in enumerate(req.targets):
        if pred[i] == t:
            already += 1
            continue
        cand = np.flatnonzero(pool_pred == t)
        if len(cand) == 0:
            none += 1
            continue
        dist = np.linalg.norm(pool_flat[cand] - flat[i], ord=order, axis=1)
        start[i] = cand[int(np.argmin(dist))]
    notes = []
    if already:
        notes.append(f"{already} input(s) already classified as their target: returned unchanged")
    if none:
        notes.append(
            f"{none} input(s) had no input of their target class to start from: "
            "returned unchanged (attack failure)"
        )
    return pool, start, notes


def _run_hsj(req: AttackRequest) -> AttackOutput:
    """CleverHans torch HSJA: needs the start images for targeted mode, hence its own runner."""
    import torch

    model = req.model
    path = _path("torch", "hop_skip_jump_attack")
    kwargs, notes = _hsj_kwargs(req)
    fn = _import(path)
    _merge_options(req, fn, kwargs, notes)
    model_fn = CleverHansAdapter().model_form(model)
    n, bs = len(req.x), max(1, int(req.batch_size))
    x_adv = np.array(req.x, dtype=np.float32, copy=True)
    call = req.announce(LibraryCall(callable=path, kwargs=kwargs, notes=notes))
    if req.spec.targeted:
        if req.targets is None:
            raise HarnessError("a targeted attack needs target classes")
        pool, start, more = _hsj_start_images(req, model_fn, bs)
        notes += more
        rows = np.flatnonzero(start >= 0)
    else:
        start, rows = np.full(n, -1), np.arange(n)
    if len(rows) > bs:
        notes.append(f"called once per chunk of {bs} inputs")
    for c in range(0, len(rows), bs):
        idx = rows[c : c + bs]
        x = model.to_tensor(req.x[idx])
        live = {**kwargs, "model_fn": model_fn, "x": x}
        if req.spec.targeted:
            assert req.targets is not None
            live["y_target"] = _torch_labels(req.targets[idx], x)
            live["image_target"] = model.to_tensor(pool[start[idx]])
        if kwargs["constraint"] == np.inf and isinstance(kwargs["gamma"], int | float):
            live["gamma"] = torch.tensor(float(kwargs["gamma"]), dtype=torch.float32, device=x.device)
        x_adv[idx] = _torch_numpy(fn(**live))
    return AttackOutput(x_adv, call)


# -- the generic runner -----------------------------------------------------------------------
@dataclass(frozen=True)
class _Recipe:
    """One attack's translation: the CleverHans function per framework and a kwargs builder.

    ``step_le_eps``: the function asserts ``eps_iter <= eps``; a larger step is Unsupported.
    """

    functions: dict[str, str]
    build: Callable[[AttackRequest], Kwargs]
    step_le_eps: bool = False

    def __call__(self, request: AttackRequest) -> AttackOutput:
        return _run(self, request)


def _merge_options(
    req: AttackRequest, fn: Callable[..., Any], kwargs: dict[str, Any], notes: list[str]
) -> None:
    """Merge ``library_options["cleverhans"]`` into ``kwargs`` last, noting each one."""
    options = req.spec.options_for("cleverhans")
    params = inspect.signature(fn).parameters
    open_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key, value in options.items():
        if key in _SET_BY_HARNESS:
            raise HarnessError(f"library_options.cleverhans.{key} is set by the harness")
        if key not in params and not open_kw:
            raise HarnessError(
                f"library_options.cleverhans.{key}: {fn.__name__} has no such "
                f"argument; it takes {', '.join(params)}"
            )
        was = f" (harness value {kwargs[key]!r})" if key in kwargs else ""
        notes.append(f"library_options: {key}={value!r}{was}")
        kwargs[key] = value


def _run(recipe: _Recipe, req: AttackRequest) -> AttackOutput:
    """Build, check, call (in chunks of ``batch_size``) and record one CleverHans attack."""
    model, fw = req.model, req.model.framework
    path = recipe.functions[fw]
    kwargs, notes = recipe.build(req)
    fn = _import(path)
    _merge_options(req, fn, kwargs, notes)
    if recipe.step_le_eps and kwargs["eps_iter"] > kwargs["eps"]:
        raise Unsupported(
            f"cleverhans {fn.__name__} asserts eps_iter <= eps; got step_size "
            f"{kwargs['eps_iter']:g} > eps {kwargs['eps']:g}"
        )
    if req.spec.restarts > 1:
        notes.append("restarts are done by the harness (one CleverHans call per restart)")
    if fw == "torch" and req.spec.norm == "l2" and req.spec.attack in ("fgm", "bim", "pgd"):
        notes.append(
            "torch L2 steps: CleverHans uses a batch-MEAN cross-entropy and floors the "
            "squared gradient norm at 1e-12 (optimize_linear), so very confident samples "
            "get a step shorter than eps / eps_iter; the result depends on batch size"
        )
    labels = req.targets if req.spec.targeted else req.y
    if labels is None:
        raise HarnessError("a targeted attack needs target classes")
    model_fn = CleverHansAdapter().model_form(model)
    to_tensor = model.to_tensor
    live_static = {"model_fn": model_fn}
    if kwargs.get("loss_fn") == _TF_LOSS:
        live_static["loss_fn"] = _tf_loss()
    n, bs = len(req.x), max(1, int(req.batch_size))
    if n > bs:
        notes.append(f"called once per chunk of {bs} inputs")
    x_adv = np.empty(req.x.shape, dtype=np.float32)
    call = req.announce(LibraryCall(callable=path, kwargs=kwargs, notes=notes))
    for start in range(0, n, bs):
        rows = slice(start, start + bs)
        x = to_tensor(req.x[rows])
        live = {**kwargs, **live_static, "x": x, "y": _LABELS[fw](labels[rows], x)}
        x_adv[rows] = _TO_NUMPY[fw](fn(**live))  # copies: never aliases request.x
    return AttackOutput(x_adv, call)


def _fgm_recipe() -> _Recipe:
    return _Recipe({fw: _path(fw, "fast_gradient_method") for fw in _PKG}, _fgm_kwargs)


def _pgd_recipe() -> _Recipe:
    return _Recipe(
        {fw: _path(fw, "projected_gradient_descent") for fw in _PKG}, _pgd_kwargs, step_le_eps=True
    )


class CleverHansAdapter(Adapter):
    """CleverHans 4.0.0: torch and tf2 function attacks (FGM, BIM, PGD, MIM, C&W L2), plus
    the black-box torch SPSA (score-based) and HopSkipJump (decision-based)."""

    name = "cleverhans"
    package = "cleverhans"
    MODULES = {
        "torch": ("cleverhans.torch.attacks.projected_gradient_descent",),
        "tensorflow": ("cleverhans.tf2.attacks.projected_gradient_descent",),
    }
    IMPLS: dict[str, Impl] = {
        "fgsm": Impl(("linf",), _fgm_recipe()),
        "fgm": Impl(("l2",), _fgm_recipe()),
        "bim": Impl(
            ("linf", "l2"),
            _Recipe(
                {
                    "torch": _path("torch", "projected_gradient_descent"),
                    "tensorflow": _path("tensorflow", "basic_iterative_method"),
                },
                _bim_kwargs,
                step_le_eps=True,
            ),
        ),
        "pgd": Impl(("linf", "l2"), _pgd_recipe()),
        "mim": Impl(
            ("linf", "l2"),
            _Recipe({"tensorflow": _path("tensorflow", "momentum_iterative_method")}, _mim_kwargs),
            frameworks=("tensorflow",),
        ),
        "cw": Impl(
            ("l2",),
            _Recipe({"torch": _path("torch", "carlini_wagner_l2")}, _cw_kwargs),
            broken={"tensorflow": _TF_CW_BROKEN},
        ),
        # -- black-box: they query model_fn (a query-only oracle under their threat model) --
        "spsa": Impl(
            ("linf",),
            _Recipe({"torch": _path("torch", "spsa")}, _spsa_kwargs),
            broken={"tensorflow": _TF_SPSA_BROKEN},
        ),
        "hsj": Impl(("l2", "linf"), _run_hsj, frameworks=("torch",)),
    }

    def convert(self, model: WrappedModel) -> Any:
        """CleverHans' ``model_fn`` is the counted callable (torch module / TF callable)."""
        return model.counted
