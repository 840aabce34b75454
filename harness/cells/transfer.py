"""Transfer cells: adversarials crafted white-box on a *source* model, refereed on a *target*.

The source is any wrapped model (a substitute trained from the target's answers, see
:mod:`advharness.zoo.substitute`, or an independently trained one, in either framework); the target
is never queried while the attack runs (checked on its counter). Layouts are converted
between the two (NCHW torch <-> NHWC Keras <-> flat).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from advharness.cells.cell import CellInputs, CellResult, attack_batch, judge_on
from advharness.cells.recording import PATH_SUMMARY
from advharness.judging.referee import summarize
from advharness.models.layout import convert

if TYPE_CHECKING:
    from advharness.config.spec import ResolvedSpec


def run_transfer(
    adapter: Any,
    inputs: CellInputs,
    spec: ResolvedSpec,
    seed: int,
    batch_size: int,
    base: dict[str, Any],
    on_call: Any = None,
) -> CellResult:
    """Attack ``inputs.source`` white-box with ``adapter``; referee the result on ``inputs.model``."""
    source, target = inputs.source, inputs.model
    assert source is not None
    before = target.counter.read()
    crafted = attack_batch(adapter, source, spec, seed, batch_size, base, on_call)
    if target.counter.read() != before:
        raise RuntimeError(f"a transfer cell queried its target {target.name!r}")
    assert crafted.x_adv is not None
    x_adv = convert(crafted.x_adv, source.model, target)
    records = judge_on(target, inputs, x_adv, spec)
    on_source = {k: v for k, v in crafted.summary.items() if k not in PATH_SUMMARY}
    info = getattr(source.model, "substitute_info", None) or {}
    summary = {
        **on_source,
        **summarize(records, spec.norm),
        # the target answered no query; the source's are reported apart
        "forward_per_sample": 0.0,
        "backward_per_sample": 0.0,
        "queries_per_sample": 0.0,
        "source_queries_per_sample": on_source["queries_per_sample"],
        "source_success_rate": on_source["success_rate"],
        "source_clean_accuracy": on_source["clean_accuracy"],
        "substitute_queries": info.get("queries_spent"),
        "substitute_access": info.get("access"),
    }
    return CellResult(summary, records, x_adv)
