"""CleverHans black-box attacks: torch SPSA (score-based) and HopSkipJump (decision-based).

They only query ``model_fn``: under ``model.with_access(...)`` it is the query-only oracle
``model.counted``, so every query is counted and a gradient request is a recorded violation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from advharness.adapters.base import AttackOutput, AttackRequest, Impl, LibraryCall
from advharness.adapters.cleverhans.common import (
    NORMS,
    Kwargs,
    Recipe,
    attack_path,
    common_kwargs,
    import_function,
    merge_options,
    model_fn,
    torch_labels,
    torch_numpy,
)
from advharness.core.errors import HarnessError
from advharness.models.base import WrappedModel

TF_SPSA_BROKEN = (
    "ValueError: Argument(s) not recognized: {'lr': 0.01} (tf2/attacks/spsa.py:98: "
    "SPSAAdam calls keras Adam.__init__(lr=...); Keras 3 only takes learning_rate). "
    "Every call fails; tf2 SPSA also accepts batch size 1 only"
)
HSJ_LINF_TYPEERROR = "TypeError: min() received an invalid combination of arguments - got (Tensor, float)"


def _spsa_kwargs(req: AttackRequest) -> Kwargs:
    p = req.spec.params
    kw = {
        **common_kwargs(req),
        "eps": float(req.spec.eps or 0.0),
        "nb_iter": int(req.spec.steps or 0),
        "norm": NORMS[req.spec.norm],
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
    constraint = NORMS[spec.norm]
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
            f"torch.min(tensor, theta): {HSJ_LINF_TYPEERROR}); gamma is passed as a "
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


def _predict_counted(fn: Any, model: WrappedModel, x: np.ndarray, bs: int) -> np.ndarray:
    """Top-1 labels of ``x`` through the (counted) oracle ``fn``, in chunks of ``bs``."""
    import torch

    with torch.no_grad():
        outs = [torch_numpy(fn(model.to_tensor(x[i : i + bs]))).argmax(1) for i in range(0, len(x), bs)]
    return np.concatenate(outs) if outs else np.zeros(0, np.int64)


def _hsj_start_images(req: AttackRequest, fn: Any, bs: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The attacker's pool and, per row, the index in it of the nearest image classified as
    the row's target (-1: none, or the row is already classified as its target)."""
    assert req.targets is not None
    pred = _predict_counted(fn, req.model, req.x, bs)
    pool = req.x if req.pool is None else req.pool
    pool_pred = pred if req.pool is None else _predict_counted(fn, req.model, pool, bs)
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
    path = attack_path("torch", "hop_skip_jump_attack")
    kwargs, notes = _hsj_kwargs(req)
    fn = import_function(path)
    merge_options(req, fn, kwargs, notes)
    oracle = model_fn(model)
    n, bs = len(req.x), max(1, int(req.batch_size))
    x_adv = np.array(req.x, dtype=np.float32, copy=True)
    call = req.announce(LibraryCall(callable=path, kwargs=kwargs, notes=notes))
    if req.spec.targeted:
        if req.targets is None:
            raise HarnessError("a targeted attack needs target classes")
        pool, start, more = _hsj_start_images(req, oracle, bs)
        notes += more
        rows = np.flatnonzero(start >= 0)
    else:
        start, rows = np.full(n, -1), np.arange(n)
    if len(rows) > bs:
        notes.append(f"called once per chunk of {bs} inputs")
    for c in range(0, len(rows), bs):
        idx = rows[c : c + bs]
        x = model.to_tensor(req.x[idx])
        live = {**kwargs, "model_fn": oracle, "x": x}
        if req.spec.targeted:
            assert req.targets is not None
            live["y_target"] = torch_labels(req.targets[idx], x)
            live["image_target"] = model.to_tensor(pool[start[idx]])
        if kwargs["constraint"] == np.inf and isinstance(kwargs["gamma"], int | float):
            live["gamma"] = torch.tensor(float(kwargs["gamma"]), dtype=torch.float32, device=x.device)
        x_adv[idx] = torch_numpy(fn(**live))
    return AttackOutput(x_adv, call)


#: Score- and decision-based CleverHans attacks (they query ``model_fn`` only).
BLACKBOX_IMPLS: dict[str, Impl] = {
    "spsa": Impl(
        ("linf",),
        Recipe({"torch": attack_path("torch", "spsa")}, _spsa_kwargs),
        broken={"tensorflow": TF_SPSA_BROKEN},
    ),
    "hsj": Impl(("l2", "linf"), _run_hsj, frameworks=("torch",)),
}
