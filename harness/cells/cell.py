"""Run one cell: one (model, attack spec, library) on one batch, refereed by the harness.

Any failure becomes a row: ``unsupported`` (the adapter's reason), ``violation`` (the attack
asked a query-only oracle for a gradient) or ``error`` (the exception's type and message).
A crash in one cell never loses another.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from advharness.adapters.base import AttackRequest, LibraryCall
from advharness.cells.blackbox import new_ledger, query_summary, run_blackbox
from advharness.cells.recording import make_recorder, path_summary
from advharness.config.spec import ResolvedSpec
from advharness.core.seeding import seed_everything
from advharness.judging.ledger import QueryLedger
from advharness.judging.referee import judge, summarize, worst_of_evaluations
from advharness.models.base import WrappedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CellInputs:
    """A model and the batch it is attacked on (``x`` in the model's layout)."""

    model: WrappedModel
    x: np.ndarray
    y: np.ndarray
    clean_pred: np.ndarray
    targets: np.ndarray | None
    #: Transfer cells: the source model and the same batch in its layout (crafted there).
    source: CellInputs | None = None

    def take(self, index: np.ndarray | slice) -> CellInputs:
        """The same cell on the samples ``index`` selects (an eps search's subsets, a
        convergence check's first samples)."""
        return CellInputs(
            self.model,
            self.x[index],
            self.y[index],
            self.clean_pred[index],
            None if self.targets is None else self.targets[index],
            None if self.source is None else self.source.take(index),
        )


@dataclass
class CellResult:
    summary: dict[str, Any]
    records: pd.DataFrame | None
    x_adv: np.ndarray | None
    #: White-box cells: each sample's best valid adversarial the attack passed through (its
    #: clean input where none), in the model's layout.
    x_seen: np.ndarray | None = None
    #: White-box cells: the per-sample loss traces (:meth:`LossTraces.arrays`).
    traces: dict[str, np.ndarray] | None = None


def attack_batch(
    adapter: Any,
    inputs: CellInputs,
    spec: ResolvedSpec,
    seed: int,
    batch_size: int,
    base: dict[str, Any],
    on_call: Callable[[LibraryCall], None] | None = None,
    record: bool = True,
) -> CellResult:
    """Attack ``inputs.model`` (all restarts) and referee the result on it (``on_call``:
    given each library call as the adapter announces it, before the library runs).

    White-box cells record what the attack passes through the counting wrapper (``record``
    and the model's ``record_path``; see :mod:`advharness.judging.path`)."""
    model = inputs.model
    library = getattr(adapter, "name", None)
    ledger = make_ledger(inputs, spec, library) if spec.threat_model != "white-box" else None
    recorder = None
    if ledger is None and record and model.record_path:
        recorder = make_recorder(model, inputs.x, inputs.y, inputs.targets, inputs.clean_pred, spec)
    x_best: np.ndarray | None = None
    records: pd.DataFrame | None = None
    elapsed, fwd, bwd = 0.0, 0, 0
    call: LibraryCall | None = None
    adapter.import_library(model.framework)  # before seeding: imports may draw random numbers
    for restart in range(spec.restarts):
        seed_everything(seed + restart)
        model.counter.reset()
        request = AttackRequest(
            model=model,
            x=inputs.x,
            y=inputs.y,
            targets=inputs.targets,
            spec=spec,
            seed=seed + restart,
            batch_size=batch_size,
            on_call=on_call,
        )
        t0 = time.perf_counter()
        with model.device_scope():  # TensorFlow on a GPU: the library's calls run there
            if ledger is not None:
                with model.with_ledger(ledger):
                    out = run_blackbox(adapter, request, ledger, inputs.clean_pred)
            elif recorder is not None:
                with model.with_recorder(recorder):
                    out = adapter.run(request)
            else:
                out = adapter.run(request)
        elapsed += time.perf_counter() - t0
        counts = model.counter.read()
        fwd, bwd = fwd + counts.forward, bwd + counts.backward
        call = out.call
        # With a budget the result is the best adversarial the oracle answered within it.
        x_out = ledger.best_within_budget() if ledger is not None and spec.budget else out.x_adv
        verdict = judge_on(model, inputs, x_out, spec)
        if x_best is None or records is None:
            x_best, records = x_out.copy(), verdict
        else:  # keep each sample's first success; otherwise take the newest attempt
            take = ~records["success"].to_numpy()
            x_best[take] = x_out[take]
            records = pd.concat([records[~take], verdict[take]]).sort_values("sample").reset_index(drop=True)
    assert records is not None and call is not None
    n = max(len(inputs.x), 1)
    summary = {
        **base,
        "status": "ok",
        "reason": "",
        **summarize(records, spec.norm),
        "time_s": elapsed,
        "forward_per_sample": fwd / n,
        "backward_per_sample": bwd / n,
        "queries_per_sample": (fwd + bwd) / n,
        "restarts": spec.restarts,
        "library_call": call.to_json(),
    }
    if ledger is not None:
        records = records.assign(**ledger.columns(spec.query_levels))
        summary.update(query_summary(records, spec, ledger))
    if recorder is not None:
        iterative = spec.steps is not None and spec.steps > 1  # I4 asks whether iterations converged
        records = records.assign(**recorder.columns(records["success"].to_numpy(), iterative))
        summary.update(path_summary(records, recorder))
    if summary["n_nonfinite"]:  # a fault, not just failed samples: the row says so
        summary.update(
            status="error",
            reason=(
                f"the library returned NaN/inf for {summary['n_nonfinite']} of {len(inputs.x)} "
                "samples (refereed as failures)"
            ),
        )
    if recorder is None:
        return CellResult(summary, records, x_best)
    return CellResult(summary, records, x_best, recorder.best_seen(), recorder.traces.arrays())


def judge_on(model: WrappedModel, inputs: CellInputs, x_adv: np.ndarray, spec: ResolvedSpec) -> pd.DataFrame:
    """The referee's per-sample records of ``x_adv`` (in ``model``'s layout) on ``model`` as
    deployed: an adaptive surrogate's verdicts are its deployed defense's; a randomized
    model is evaluated ``evaluations`` times and a sample is robust only if it survives every
    evaluation; a detected model's flagged inputs are no successes (with each sample's
    detector score on the clean and the adversarial input, for ROC curves)."""
    deployed = model.deployed or model
    x_eval = np.nan_to_num(x_adv)
    k = deployed.evaluations
    if k > 1:
        preds = np.stack([deployed.predict(x_eval) for _ in range(k)])
        adv_pred = worst_of_evaluations(preds, inputs.y, inputs.targets)
    else:
        adv_pred = deployed.predict(x_eval)
    detected = scores = clean_scores = None
    if deployed.detector is not None:
        scores, detected = deployed.detector.flag(x_eval)
        clean_scores, _ = deployed.detector.flag(inputs.x)
    records = judge(
        x=inputs.x,
        y=inputs.y,
        x_adv=x_adv,
        clean_pred=inputs.clean_pred,
        adv_pred=adv_pred,
        bounds=model.bounds,
        norm=spec.norm,
        eps=spec.eps,
        enforce_eps=spec.kind == "fixed",
        targets=inputs.targets,
        detected=detected,
        evaluations=k,
    ).records
    if scores is not None and clean_scores is not None and deployed.detector is not None:
        records = records.assign(
            detector_score=scores,
            clean_detector_score=clean_scores,
            clean_detected=clean_scores > deployed.detector.threshold,
        )
    return records


def clean_predictions(model: WrappedModel, x: np.ndarray, y: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """The clean predictions a cell is judged against: ``logits``' argmax (``model``'s own);
    an adaptive surrogate's are its deployed defense's; for a randomized model
    (``evaluations`` > 1) the first evaluation that errs, so a sample counts as correct only
    if every evaluation classifies it correctly."""
    deployed = model.deployed or model
    if deployed is model and deployed.evaluations <= 1:
        return np.asarray(logits.argmax(axis=1))
    preds = np.stack([deployed.predict(x) for _ in range(deployed.evaluations)])
    return worst_of_evaluations(preds, np.asarray(y))


def make_ledger(inputs: CellInputs, spec: ResolvedSpec, library: str | None = None) -> QueryLedger:
    """The ledger of a black-box cell on ``inputs`` (batched or per sample, as ``spec``'s
    ``query_mode`` says; see :func:`advharness.cells.blackbox.new_ledger`)."""
    return new_ledger(inputs.model, inputs.x, inputs.y, inputs.targets, spec, library)
