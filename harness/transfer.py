"""Transfer cells: adversarials crafted white-box on a *source* model, refereed on a *target*.

The source is any wrapped model (a substitute trained from the target's answers, see
:mod:`advharness.substitute`, or an independently trained one, in either framework); the target
is never queried while the attack runs (checked on its counter). Layouts are converted
between the two (NCHW torch <-> NHWC Keras <-> flat).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from advharness.errors import HarnessError
from advharness.models import WrappedModel
from advharness.referee import judge, summarize

if TYPE_CHECKING:
    from advharness.cell import CellInputs, CellResult
    from advharness.spec import ResolvedSpec


def to_nchw(x: np.ndarray, model: WrappedModel, image_shape: tuple[int, ...]) -> np.ndarray:
    """``x`` in ``model``'s layout back to NCHW (``image_shape``: the (C, H, W) to restore)."""
    layouts: dict[str, Any] = {
        "NCHW": lambda a: a,
        "NHWC": lambda a: a.transpose(0, 3, 1, 2),
        "flat": lambda a: a.reshape(len(a), *image_shape),
    }
    return np.ascontiguousarray(layouts[model.layout](x), dtype=np.float32)


def nchw_shape(model: WrappedModel) -> tuple[int, ...]:
    """The NCHW image shape of an image model, or its flat shape."""
    shape = model.input_shape
    return {"NCHW": shape, "NHWC": (shape[2], shape[0], shape[1]) if len(shape) == 3 else shape,
            "flat": shape}[model.layout]


def convert(x: np.ndarray, source: WrappedModel, target: WrappedModel) -> np.ndarray:
    """A batch in ``source``'s layout, in ``target``'s layout (same features, same order)."""
    from advharness.runner import to_layout

    shape = nchw_shape(target if source.layout == "flat" else source)
    if int(np.prod(nchw_shape(source))) != int(np.prod(nchw_shape(target))):
        raise HarnessError(f"transfer from {source.name!r} to {target.name!r}: input shapes "
                           f"{source.input_shape} and {target.input_shape} differ")
    return to_layout(to_nchw(x, source, shape), target)


def run_transfer(adapter: Any, inputs: CellInputs, spec: ResolvedSpec, seed: int,
                 batch_size: int, base: dict[str, Any], on_call: Any = None) -> CellResult:
    """Attack ``inputs.source`` white-box with ``adapter``; referee the result on ``inputs.model``."""
    from advharness.cell import CellResult, attack_batch

    source, target = inputs.source, inputs.model
    assert source is not None
    before = target.counter.read()
    crafted = attack_batch(adapter, source, spec, seed, batch_size, base, on_call)
    if target.counter.read() != before:
        raise RuntimeError(f"a transfer cell queried its target {target.name!r}")
    assert crafted.x_adv is not None
    x_adv = convert(crafted.x_adv, source.model, target)
    records = judge(
        x=inputs.x, y=inputs.y, x_adv=x_adv, clean_pred=inputs.clean_pred,
        adv_pred=target.predict(np.nan_to_num(x_adv)), bounds=target.bounds, norm=spec.norm,
        eps=spec.eps, enforce_eps=spec.kind == "fixed", targets=inputs.targets).records
    on_source = crafted.summary
    info = getattr(source.model, "substitute_info", None) or {}
    summary = {
        **on_source, **summarize(records, spec.norm),
        # the target answered no query; the source's are reported apart
        "forward_per_sample": 0.0, "backward_per_sample": 0.0, "queries_per_sample": 0.0,
        "source_queries_per_sample": on_source["queries_per_sample"],
        "source_success_rate": on_source["success_rate"],
        "source_clean_accuracy": on_source["clean_accuracy"],
        "substitute_queries": info.get("queries_spent"),
        "substitute_access": info.get("access"),
    }
    return CellResult(summary, records, x_adv)
