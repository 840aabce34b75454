"""Running a black-box cell's library calls under its ledger: per sample or batched.

``per-sample``: one library call per attacked sample, so every query belongs to it by
construction. ``batched``: one library call per chunk of ``batch_size`` attacked samples; the
:class:`~advharness.judging.batched.BatchedLedger` attributes each answered row to its sample.
Either way samples the model already misclassifies are not attacked (0 queries; they never
count as successes), the other inputs of the batch travel as ``request.pool`` (starting points
some attacks take from the attacker's own images), and a call the ledger stopped at the budget
ends there: the ledger holds the best result within it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from advharness.adapters.base import AttackOutput, AttackRequest, LibraryCall
from advharness.config.querymode import LOCKSTEP, PER_SAMPLE_BY_DEFAULT, POSITIONAL, attribution
from advharness.config.spec import ResolvedSpec
from advharness.core.errors import Unsupported
from advharness.judging.batched import BatchedLedger
from advharness.judging.ledger import QueryLedger
from advharness.judging.referee import EPS_ATOL, EPS_RTOL, input_scale
from advharness.models.base import WrappedModel


def new_ledger(
    model: WrappedModel,
    x: np.ndarray,
    y: np.ndarray,
    targets: np.ndarray | None,
    spec: ResolvedSpec,
    library: str | None = None,
) -> QueryLedger:
    """The ledger of a black-box cell: a :class:`BatchedLedger` for ``query_mode: batched``
    (attributing by position where ``library``'s attack declares it, else by distance, with
    the eps-ball's radius as margin for fixed-budget cells), else the per-sample one."""
    common: dict[str, Any] = {
        "x": x,
        "y": y,
        "targets": targets,
        "bounds": model.bounds,
        "norm": spec.norm,
        "eps": spec.eps,
        "enforce_eps": spec.kind == "fixed",
        "budget": spec.budget,
    }
    if spec.query_mode != "batched":
        return QueryLedger(**common)
    reach = 0.0
    if spec.kind == "fixed" and spec.eps is not None:
        reach = spec.eps * (1.0 + EPS_RTOL) + EPS_ATOL * input_scale(model.bounds)
    how = attribution(library, spec.attack) if library is not None else "distance"
    return BatchedLedger(attribution=how, reach=reach, **common)


def run_blackbox(
    adapter: Any, request: AttackRequest, ledger: QueryLedger, clean_pred: np.ndarray
) -> AttackOutput:
    """The library calls of a black-box cell, as its ledger's mode says."""
    if isinstance(ledger, BatchedLedger):
        return run_batched(adapter, request, ledger, clean_pred)
    return run_per_sample(adapter, request, ledger, clean_pred)


def _calls(adapter: Any, request: AttackRequest) -> tuple[list[LibraryCall], Any]:
    spec = request.spec
    reason = adapter.unsupported_reason(spec.attack, spec.norm, request.model.framework, spec.targeted)
    if reason:
        raise Unsupported(reason)
    calls: list[LibraryCall] = []

    def record(call: LibraryCall) -> None:
        calls.append(call)
        request.announce(call)

    return calls, record


def _part(request: AttackRequest, idx: np.ndarray | slice, record: Any) -> AttackRequest:
    """``request`` on the samples ``idx`` alone; the whole batch travels as ``pool`` (the
    starting points some attacks take from the attacker's own images)."""
    return replace(
        request,
        x=request.x[idx],
        y=request.y[idx],
        pool=request.x,
        targets=None if request.targets is None else request.targets[idx],
        on_call=record,
    )


def _run(adapter: Any, sub: AttackRequest, ledger: QueryLedger) -> np.ndarray | None:
    """One library call; None when the ledger stopped it at the budget."""
    try:
        return np.asarray(adapter.run(sub).x_adv)
    except Exception:
        # The oracle stopped the attack at the budget (TF turns our exception into its own
        # error type, so ask the ledger); the ledger holds the best result in budget.
        if not ledger.exhausted():
            raise
        return None
    finally:
        ledger.end()


def _finish(calls: list[LibraryCall], notes: list[str], spec: ResolvedSpec) -> LibraryCall:
    call = calls[-1] if calls else None
    if call is None:
        call = LibraryCall(
            callable="(not called)",
            kwargs={},
            notes=["no sample was classified correctly: nothing to attack"],
        )
    call.notes = [*call.notes, *notes]
    if spec.budget is not None:
        call.notes.append(
            f"budget {spec.budget} queries per sample, enforced by the oracle: "
            "the result is the best valid adversarial the oracle answered within the budget"
        )
    return call


def run_per_sample(
    adapter: Any, request: AttackRequest, ledger: QueryLedger, clean_pred: np.ndarray
) -> AttackOutput:
    """Call the library once per sample, so the ledger attributes every query exactly."""
    calls, record = _calls(adapter, request)
    x_adv = np.array(request.x, dtype=np.float32, copy=True)
    todo = np.flatnonzero(clean_pred == request.y)
    for i in todo:
        ledger.begin(int(i))
        out = _run(adapter, _part(request, slice(int(i), int(i) + 1), record), ledger)
        if out is not None:
            x_adv[i] = out[0]
    note = (
        f"query_mode per-sample: one library call per sample ({len(todo)} of {len(x_adv)} "
        "attacked; samples the model already misclassifies are skipped) so every "
        "query is attributed to its sample exactly"
    )
    if request.spec.budget is not None:
        note += "; a query past the budget stops the attack on that sample"
    return AttackOutput(x_adv, _finish(calls, [note], request.spec))


def run_batched(
    adapter: Any, request: AttackRequest, ledger: BatchedLedger, clean_pred: np.ndarray
) -> AttackOutput:
    """Call the library once per chunk of ``batch_size`` attacked samples (in order); the
    ledger attributes every answered row to its sample."""
    calls, record = _calls(adapter, request)
    x_adv = np.array(request.x, dtype=np.float32, copy=True)
    todo = np.flatnonzero(clean_pred == request.y)
    bs = max(1, int(request.batch_size))
    for c in range(0, len(todo), bs):
        idx = todo[c : c + bs]
        ledger.begin_group(idx)
        out = _run(adapter, _part(request, idx, record), ledger)
        if out is not None:
            x_adv[idx] = out
    spec = request.spec
    by = ledger.by
    if ledger.attribution == "position":
        why = POSITIONAL.get((adapter.name, spec.attack), "declared")
        how = f"by position ({why}): {by['position']} rows"
    else:
        how = (
            f"by the nearest original (reach {ledger.reach:g}): {by['chunk']} rows by the chunk "
            f"rule, {by['search']} by search, {by['ambiguous']} ambiguous (charged to every "
            "candidate sample, never judged)"
        )
    notes = [
        f"query_mode batched: one library call per chunk of {bs} attacked samples "
        f"({len(todo)} of {len(x_adv)} attacked; samples the model already misclassifies are "
        f"skipped); every answered row attributed to its sample {how}"
    ]
    reason = PER_SAMPLE_BY_DEFAULT.get((adapter.name, spec.attack))
    if reason is not None:
        notes.append(f"batched on request; this attack runs per sample by default: {reason}")
    lockstep = LOCKSTEP.get((adapter.name, spec.attack))
    if lockstep is not None:  # every black-box cell reports queries and first successes
        notes.append(lockstep)
    if spec.budget is not None:
        notes.append(
            "rows past a sample's budget are answered truthfully but neither counted nor judged "
            "(queries_refused); a call stops once all its samples have spent their budgets"
        )
    return AttackOutput(x_adv, _finish(calls, notes, spec))


def query_summary(
    records: pd.DataFrame, spec: ResolvedSpec, ledger: QueryLedger | None = None
) -> dict[str, Any]:
    """Per-cell query statistics over the attacked (initially correct) samples."""
    attacked = records[records["correct"]]
    q = attacked["queries"].to_numpy()
    out: dict[str, Any] = {
        "budget": spec.budget,
        "query_mode": spec.query_mode or "",
        "queries_mean": float(q.mean()) if len(q) else float("nan"),
        "queries_median": float(np.median(q)) if len(q) else float("nan"),
        "queries_max": int(q.max()) if len(q) else 0,
        "n_stopped_at_budget": int(attacked["stopped_at_budget"].sum()),
        "queries_ambiguous": int(ledger.by["ambiguous"]) if isinstance(ledger, BatchedLedger) else 0,
    }
    first = attacked["first_success_query"]  # minimum-norm cells run without eps
    for level in spec.query_levels:
        hit = (first.to_numpy() <= level) if len(attacked) else np.zeros(0, bool)
        out[f"success_at_q{level}"] = float(hit.mean()) if len(hit) else float("nan")
        if spec.kind == "minimal":
            norms = attacked[f"norm_at_q{level}"].to_numpy()
            out[f"median_norm_at_q{level}"] = float(np.median(norms)) if len(norms) else float("nan")
    return out
