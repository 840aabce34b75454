"""Helpers every CleverHans attack shares: function paths, live objects, kwargs, the runner.

Kwargs builders return JSON-able kwargs (placeholders such as ``"<model_fn>"`` for live
objects) plus notes; :func:`run_recipe` swaps in the live objects chunk by chunk and records
the call. Library imports happen inside the functions that need them.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from advharness.adapters.base import AttackOutput, AttackRequest, LibraryCall
from advharness.core.errors import HarnessError, Unsupported
from advharness.models.base import WrappedModel

NORMS: dict[str, float | int] = {"linf": np.inf, "l2": 2}
PACKAGES = {"torch": "cleverhans.torch.attacks", "tensorflow": "cleverhans.tf2.attacks"}
TF_LOSS = "tf.nn.sparse_softmax_cross_entropy_with_logits"
_SET_BY_HARNESS = frozenset({"model_fn", "x", "y", "y_target", "image_target"})

Kwargs = tuple[dict[str, Any], list[str]]


def attack_path(framework: str, module: str, function: str | None = None) -> str:
    """Dotted path of a CleverHans attack function."""
    return f"{PACKAGES[framework]}.{module}.{function or module}"


def import_function(path: str) -> Callable[..., Any]:
    """Import a function from its dotted path (CleverHans' attack packages export nothing)."""
    module, _, name = path.rpartition(".")
    return cast(Callable[..., Any], getattr(importlib.import_module(module), name))


def model_fn(model: WrappedModel) -> Any:
    """CleverHans' ``model_fn``: the counted callable, cached as the model's library form."""
    return model.library_form("cleverhans", lambda: model.counted)


# -- live objects per framework (chosen by dict, imported lazily) ---------------------------
def torch_labels(y: np.ndarray, x: Any) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)).to(x.device)


def _tf_labels(y: np.ndarray, x: Any) -> Any:
    import tensorflow as tf

    return tf.convert_to_tensor(np.asarray(y, dtype=np.int64))


def torch_numpy(t: Any) -> np.ndarray:
    return cast(np.ndarray, t.detach().cpu().numpy())


def _tf_numpy(t: Any) -> np.ndarray:
    return np.asarray(t)


def _tf_loss() -> Any:
    import tensorflow as tf

    return tf.nn.sparse_softmax_cross_entropy_with_logits


_LABELS: dict[str, Callable[[np.ndarray, Any], Any]] = {  # int64 labels beside inputs x
    "torch": torch_labels,
    "tensorflow": _tf_labels,
}
_TO_NUMPY: dict[str, Callable[[Any], np.ndarray]] = {"torch": torch_numpy, "tensorflow": _tf_numpy}


# -- kwargs shared by the builders ----------------------------------------------------------
def common_kwargs(req: AttackRequest) -> dict[str, Any]:
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


def budget_kwargs(req: AttackRequest, iterative: bool) -> dict[str, Any]:
    """eps, norm and (for iterative attacks) eps_iter / nb_iter."""
    spec = req.spec
    out: dict[str, Any] = {"eps": float(spec.eps or 0.0), "norm": NORMS[spec.norm]}
    if iterative:
        out |= {"eps_iter": float(spec.step_size or 0.0), "nb_iter": int(spec.steps or 0)}
    return out


def merge_options(
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


# -- the generic runner -----------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """One attack's translation: the CleverHans function per framework and a kwargs builder.

    ``step_le_eps``: the function asserts ``eps_iter <= eps``; a larger step is Unsupported.
    """

    functions: dict[str, str]
    build: Callable[[AttackRequest], Kwargs]
    step_le_eps: bool = False

    def __call__(self, request: AttackRequest) -> AttackOutput:
        return run_recipe(self, request)


def run_recipe(recipe: Recipe, req: AttackRequest) -> AttackOutput:
    """Build, check, call (in chunks of ``batch_size``) and record one CleverHans attack."""
    model, fw = req.model, req.model.framework
    path = recipe.functions[fw]
    kwargs, notes = recipe.build(req)
    fn = import_function(path)
    merge_options(req, fn, kwargs, notes)
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
    live_static = {"model_fn": model_fn(model)}
    if kwargs.get("loss_fn") == TF_LOSS:
        live_static["loss_fn"] = _tf_loss()
    n, bs = len(req.x), max(1, int(req.batch_size))
    if n > bs:
        notes.append(f"called once per chunk of {bs} inputs")
    x_adv = np.empty(req.x.shape, dtype=np.float32)
    call = req.announce(LibraryCall(callable=path, kwargs=kwargs, notes=notes))
    for start in range(0, n, bs):
        rows = slice(start, start + bs)
        x = model.to_tensor(req.x[rows])
        live = {**kwargs, **live_static, "x": x, "y": _LABELS[fw](labels[rows], x)}
        x_adv[rows] = _TO_NUMPY[fw](fn(**live))  # copies: never aliases request.x
    return AttackOutput(x_adv, call)
