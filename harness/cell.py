"""Run one cell: one (model, attack spec, library) on one batch, refereed by the harness.

Any failure becomes a row: ``unsupported`` (the adapter's reason), ``violation`` (the attack
asked a query-only oracle for a gradient) or ``error`` (the exception's type and message).
A crash in one cell never loses another.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from adapters import get_adapter
from adapters.base import AttackRequest, LibraryCall
from harness.errors import Unsupported
from harness.models import ThreatModelViolation, WrappedModel
from harness.referee import judge, summarize
from harness.seeding import seed_everything
from harness.spec import ResolvedSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CellInputs:
    """A model and the batch it is attacked on (``x`` in the model's layout)."""

    model: WrappedModel
    x: np.ndarray
    y: np.ndarray
    clean_pred: np.ndarray
    targets: np.ndarray | None


@dataclass
class CellResult:
    summary: dict[str, Any]
    records: pd.DataFrame | None
    x_adv: np.ndarray | None


def run_cell(
    inputs: CellInputs, spec: ResolvedSpec, library: str, seed: int, batch_size: int
) -> CellResult:
    """Attack ``inputs`` with ``library``'s ``spec`` and referee the result."""
    model = inputs.model
    adapter = get_adapter(library)
    base: dict[str, Any] = {
        "library": library, "library_version": adapter.version_hint(),
        "framework": model.framework, "model": model.name, "family": model.family, "attack": spec.attack,
        "norm": spec.norm, "eps": spec.eps, "targeted": spec.targeted,
        "threat_model": spec.threat_model, "seed": seed,
        "n": len(inputs.x),
    }
    try:
        with model.with_access(spec.threat_model):
            result = _attack(adapter, inputs, spec, seed, batch_size, base)
            if model.violation:  # the library caught our exception and carried on
                raise ThreatModelViolation(model.violation)
            return result
    except Unsupported as e:
        return CellResult({**base, "status": "unsupported", "reason": e.reason}, None, None)
    except Exception as e:  # recorded as a row, with the traceback in the log
        log.debug("cell %s/%s failed:\n%s", library, spec.label, traceback.format_exc())
        if model.violation:  # whatever the library turned our exception into
            return CellResult({**base, "status": "violation", "reason": model.violation}, None, None)
        msg = f"{type(e).__name__}: {e}".splitlines()[0][:500]
        return CellResult({**base, "status": "error", "reason": msg}, None, None)


def _attack(
    adapter: Any, inputs: CellInputs, spec: ResolvedSpec, seed: int, batch_size: int,
    base: dict[str, Any],
) -> CellResult:
    model = inputs.model
    x_best: np.ndarray | None = None
    records: pd.DataFrame | None = None
    elapsed, fwd, bwd = 0.0, 0, 0
    call: LibraryCall | None = None
    for restart in range(spec.restarts):
        seed_everything(seed + restart)
        model.counter.reset()
        request = AttackRequest(model=model, x=inputs.x, y=inputs.y, targets=inputs.targets,
                                spec=spec, seed=seed + restart, batch_size=batch_size)
        t0 = time.perf_counter()
        out = adapter.run(request)
        elapsed += time.perf_counter() - t0
        counts = model.counter.read()
        fwd, bwd = fwd + counts.forward, bwd + counts.backward
        call = out.call
        verdict = judge(
            x=inputs.x, y=inputs.y, x_adv=out.x_adv, clean_pred=inputs.clean_pred,
            adv_pred=model.predict(np.nan_to_num(out.x_adv)), bounds=model.bounds,
            norm=spec.norm, eps=spec.eps, enforce_eps=spec.kind == "fixed",
            targets=inputs.targets,
        ).records
        if x_best is None or records is None:
            x_best, records = out.x_adv.copy(), verdict
        else:  # keep each sample's first success; otherwise take the newest attempt
            take = ~records["success"].to_numpy()
            x_best[take] = out.x_adv[take]
            records = (pd.concat([records[~take], verdict[take]])
                       .sort_values("sample").reset_index(drop=True))
    assert records is not None and call is not None
    n = max(len(inputs.x), 1)
    summary = {
        **base, "status": "ok", "reason": "",
        **summarize(records, spec.norm),
        "time_s": elapsed, "forward_per_sample": fwd / n, "backward_per_sample": bwd / n,
        "queries_per_sample": (fwd + bwd) / n, "restarts": spec.restarts,
        "library_call": call.to_json(),
    }
    return CellResult(summary, records, x_best)
