"""One cell, dispatched: white-box batch, black-box per sample, or transfer."""

from __future__ import annotations

import traceback
from typing import Any

from advharness.adapters import get_adapter
from advharness.adapters.base import LibraryCall
from advharness.cells.cell import CellInputs, CellResult, attack_batch, log
from advharness.cells.search import run_search
from advharness.cells.transfer import run_transfer
from advharness.config.spec import ResolvedSpec
from advharness.core.errors import Unsupported, one_line
from advharness.core.interrupts import describe, from_user
from advharness.models.base import ThreatModelViolation


def run_cell(inputs: CellInputs, spec: ResolvedSpec, library: str, seed: int, batch_size: int) -> CellResult:
    """Attack ``inputs`` with ``library``'s ``spec`` and referee the result."""
    model = inputs.model
    adapter = get_adapter(library)
    spec = spec.for_library(library)  # a black-box cell's query mode
    base: dict[str, Any] = {
        **spec.columns(),
        "library": library,
        "library_version": adapter.version_hint(),
        "framework": model.framework,
        "model": model.name,
        "family": model.family,
        "seed": seed,
        "n": len(inputs.x),
        "bounds_low": float(model.bounds[0]),
        "bounds_high": float(model.bounds[1]),
    }
    if inputs.source is not None:
        base.update(threat_model="transfer", source_model=inputs.source.model.name)
    attacked = (inputs.source or inputs).model  # the model the library touches
    calls: list[LibraryCall] = []  # what the adapter announced, kept if the library then fails
    try:
        with attacked.with_access(spec.threat_model):
            if inputs.source is None:
                run = run_search if spec.search is not None else attack_batch
                result = run(adapter, inputs, spec, seed, batch_size, base, on_call=calls.append)
            else:
                result = run_transfer(adapter, inputs, spec, seed, batch_size, base, on_call=calls.append)
            if attacked.violation:  # the library caught our exception and carried on
                raise ThreatModelViolation(attacked.violation)
            return result
    except (SystemExit, KeyboardInterrupt) as e:  # library code, unless the user's Ctrl-C
        if from_user(e):
            raise
        tb = traceback.format_exc()
        log.warning("cell %s/%s: %s", library, spec.label, describe(e))
        log.info("cell %s/%s on %s failed:\n%s", library, spec.label, model.name, tb)
        return CellResult(
            {
                **base,
                "status": "error",
                "reason": describe(e),
                "traceback": tb,
                **({"library_call": calls[-1].to_json()} if calls else {}),
            },
            None,
            None,
        )
    except Unsupported as e:
        return CellResult({**base, "status": "unsupported", "reason": e.reason}, None, None)
    except Exception as e:  # a row with its evidence: the traceback and the library call
        tb = traceback.format_exc()
        log.info("cell %s/%s on %s failed:\n%s", library, spec.label, model.name, tb)
        evidence = {"traceback": tb, **({"library_call": calls[-1].to_json()} if calls else {})}
        if attacked.violation:  # whatever the library turned our exception into
            return CellResult(
                {**base, "status": "violation", "reason": attacked.violation, **evidence}, None, None
            )
        return CellResult({**base, "status": "error", "reason": one_line(e, 500), **evidence}, None, None)
