"""Model probes: checks of a wrapped model on the evaluated batch that tell a sound
robustness evaluation from a broken one, before any attack's numbers are read.

Each probe gives a value, its threshold, the rule and its source, and whether it flags the
model. All forward and backward passes are the harness's own (uncounted): probes are not
queries.

* ``zero_gradients`` - Indicator I1 (Pintor et al. 2022) and AutoAttack's zero-gradient
  flag: samples whose cross-entropy gradient with respect to the input, at the clean point,
  has L1 norm 0 or is not finite (or the gradient computation raises). The loss is computed
  in float64 from the float32 logits, so a confidently classified sample's gradient does not
  underflow to 0 through the softmax.
* ``randomness`` - AutoAttack: 5 forward passes of the same batch; flag if any prediction
  differs or the L2-normalised logits differ by more than 1e-4 (L2 distance, any pair).
* ``batch_size_dependence`` - clean predictions at batch size 1 must equal those at the
  experiment's batch size (a released defense changed its accuracy with the batch size:
  TRADES issue 3). Rows whose top two logits are within float rounding at both sizes
  (a tie) do not count.
* ``softmax_output`` - AutoAttack: outputs all in [0, 1] with rows summing to 1 within
  1e-5, while the model is declared to output logits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from advharness.core.errors import one_line
from advharness.models.base import WrappedModel

PROBES = ("zero_gradients", "randomness", "batch_size_dependence", "softmax_output")
RANDOM_PASSES = 5
RANDOM_TOL = 1e-4
SOFTMAX_TOL = 1e-5
#: Relative gap of the top two logits below which a changed prediction is a float tie.
TIE_RTOL = 1e-5
#: Sample indices listed per probe at most (the count is always complete).
MAX_LISTED = 1000


def _row(
    probe: str,
    flagged: bool,
    value: float,
    threshold: float,
    rule: str,
    source: str,
    samples: np.ndarray | None = None,
    detail: str = "",
) -> dict[str, Any]:
    idx = [] if samples is None else [int(i) for i in np.asarray(samples)[:MAX_LISTED]]
    return {
        "probe": probe,
        "flagged": bool(flagged),
        "value": float(value),
        "threshold": float(threshold),
        "rule": rule,
        "source": source,
        "n_samples": 0 if samples is None else len(samples),
        "samples": idx,
        "detail": detail,
    }


def _chunks(n: int, batch_size: int) -> list[slice]:
    return [slice(i, i + batch_size) for i in range(0, n, batch_size)]


def zero_gradients(model: WrappedModel, x: np.ndarray, y: np.ndarray, batch_size: int) -> dict[str, Any]:
    rule = "L1 norm of the input gradient of the cross-entropy at the clean point is 0 or not finite"
    source = "Pintor et al. 2022, Indicator I1; AutoAttack checks.py (zero gradients)"
    try:
        grads = np.concatenate(
            [model.input_gradients(x[s], y[s]) for s in _chunks(len(x), batch_size)]
        ).reshape(len(x), -1)
    except Exception as e:  # I1: the gradient computation raises
        return _row(
            "zero_gradients", True, len(x), 0, rule, source, np.arange(len(x)), f"raised {one_line(e)}"
        )
    l1 = np.abs(grads.astype(np.float64)).sum(axis=1)
    bad = np.flatnonzero(~np.isfinite(l1) | (l1 == 0))
    return _row("zero_gradients", bad.size > 0, bad.size, 0, rule, source, bad)


def randomness(model: WrappedModel, x: np.ndarray, batch_size: int) -> dict[str, Any]:
    rule = (
        f"{RANDOM_PASSES} forward passes of the same batch: any prediction differs, or the "
        f"L2-normalised logits of a sample differ by more than {RANDOM_TOL:g} (L2)"
    )
    source = "AutoAttack checks.py (check_randomized)"
    outs = [model.predict_logits(x, batch_size).astype(np.float64) for _ in range(RANDOM_PASSES)]
    normed = [o / (np.linalg.norm(o, axis=1, keepdims=True) + 1e-10) for o in outs]
    diff = max(
        (
            float(np.nan_to_num(np.linalg.norm(a - b, axis=1), nan=np.inf).max(initial=0.0))
            for i, a in enumerate(normed)
            for b in normed[i + 1 :]
        ),
        default=0.0,
    )
    preds = np.stack([o.argmax(axis=1) for o in outs])
    changed = np.flatnonzero((preds != preds[0]).any(axis=0))
    flagged = changed.size > 0 or diff > RANDOM_TOL
    return _row("randomness", flagged, diff, RANDOM_TOL, rule, source, changed)


def _tied(logits: np.ndarray) -> np.ndarray:
    top2 = np.sort(logits, axis=1)[:, -2:]
    scale = np.maximum(1.0, np.abs(top2).max(axis=1))
    return np.asarray((top2[:, 1] - top2[:, 0]) <= TIE_RTOL * scale, dtype=bool)


def batch_size_dependence(model: WrappedModel, x: np.ndarray, batch_size: int) -> dict[str, Any]:
    rule = (
        f"clean predictions at batch size 1 differ from those at batch size {batch_size} "
        "(float ties of the top two logits excepted)"
    )
    source = "TRADES issue 3 (yaodongyu/TRADES); evaluation-checks: two batch sizes must agree"
    full = model.predict_logits(x, batch_size).astype(np.float64)
    try:
        one = model.predict_logits(x, 1).astype(np.float64)
    except Exception as e:
        return _row(
            "batch_size_dependence",
            True,
            len(x),
            0,
            rule,
            source,
            np.arange(len(x)),
            f"batch size 1 raised {one_line(e)}",
        )
    differ = one.argmax(axis=1) != full.argmax(axis=1)
    bad = np.flatnonzero(differ & ~(_tied(one) & _tied(full)))
    return _row("batch_size_dependence", bad.size > 0, bad.size, 0, rule, source, bad)


def softmax_output(model: WrappedModel, x: np.ndarray, batch_size: int) -> dict[str, Any]:
    rule = (
        f"all outputs in [0, 1] and every row sums to 1 within {SOFTMAX_TOL:g}, while the model "
        "is declared to output logits"
    )
    source = "AutoAttack checks.py (check_range_output)"
    raw = model.predict_logits(x, batch_size).astype(np.float64)
    if model.outputs == "probabilities":  # predict_logits took their log
        raw = np.exp(raw)
    sums = np.abs(raw.sum(axis=1) - 1.0)
    looks = bool(raw.size and raw.min() >= -SOFTMAX_TOL and raw.max() <= 1 + SOFTMAX_TOL)
    looks = looks and bool((sums < SOFTMAX_TOL).all())
    detail = (
        "" if model.outputs == "logits" else "declared outputs: probabilities (the harness takes their log)"
    )
    return _row(
        "softmax_output",
        looks and model.outputs == "logits",
        float(sums.max(initial=0.0)),
        SOFTMAX_TOL,
        rule,
        source,
        detail=detail,
    )


def probe_model(model: WrappedModel, x: np.ndarray, y: np.ndarray, batch_size: int) -> list[dict[str, Any]]:
    """Every probe of ``model`` on the batch ``x`` (its layout) with labels ``y``, at the
    experiment's ``batch_size``: one dict per probe (see the module docstring)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.asarray(y, np.int64)
    bs = max(1, int(batch_size))
    return [
        zero_gradients(model, x, y, bs),
        randomness(model, x, bs),
        batch_size_dependence(model, x, bs),
        softmax_output(model, x, bs),
    ]
