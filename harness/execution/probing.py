"""Model probes of a run (see :mod:`advharness.models.probes`): computed once per model and
data where the models are built, stored in ``probes/`` and reused by a resumed run while the
model's parameters and the batch size are unchanged."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from advharness.models.base import WrappedModel
from advharness.models.probes import probe_model
from advharness.reporting.store import CellStore

log = logging.getLogger(__name__)


def probe_entry(
    name: str, model: WrappedModel, x: np.ndarray, y: np.ndarray, batch_size: int, data_sha256: str
) -> dict[str, Any]:
    """One model's probes on its batch ``x`` (its layout), as stored."""
    t0 = time.perf_counter()
    rows = probe_model(model, x, y, batch_size)
    for r in rows:
        if r["flagged"]:
            log.warning(
                "model %s: probe %s flagged (value %g, threshold %g: %s)%s",
                name,
                r["probe"],
                r["value"],
                r["threshold"],
                r["rule"],
                f"; {r['detail']}" if r["detail"] else "",
            )
    return {
        "model": name,
        "framework": model.framework,
        "data_sha256": data_sha256,
        "parameter_hash": model.parameter_hash(),
        "batch_size": int(batch_size),
        "n": len(x),
        "time_s": round(time.perf_counter() - t0, 3),
        "probes": rows,
    }


def probe_models(
    models: dict[str, WrappedModel],
    batch: Callable[[str, WrappedModel], np.ndarray],
    y: np.ndarray,
    data_sha256: str,
    batch_size: int,
    store: CellStore,
    params: dict[str, str],
) -> None:
    """Probe every model of a run on its batch (``batch(name, model)``: the run's data in
    its layout, on its bounds) unless ``store`` holds its probes for the same data
    (``data_sha256``), parameters (``params``, the models' parameter hashes) and batch size."""
    for name, model in models.items():
        stored = store.read_probes(name, data_sha256)
        if (
            stored is not None
            and stored.get("parameter_hash") == params.get(name)
            and stored.get("batch_size") == batch_size
        ):
            continue
        store.write_probes(probe_entry(name, model, batch(name, model), y, batch_size, data_sha256))
