"""Hand-built runs for the sanity-check tests: each cell is given by the samples it broke,
and its summary row is computed from its records (as the referee would)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from analytics_helpers import cell_records


def cell(
    key: str,
    attack: str,
    broken: Iterable[int],
    *,
    n: int = 40,
    misclassified: Iterable[int] = (),
    eps: float = 0.1,
    kind: str = "fixed",
    norm: str = "linf",
    library: str = "art",
    model: str = "m",
    threat_model: str = "white-box",
    dist: Iterable[float] | None = None,
    summary: dict[str, Any] | None = None,
    **columns: Any,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """One cell's summary row and records: ``broken`` samples succeeded (within ``eps``),
    ``misclassified`` ones were wrong before the attack; ``dist``: each sample's perturbation
    in ``norm`` (default ``eps`` for the broken ones, 0 otherwise). Labels cycle over 10
    classes. ``columns``: extra records columns; ``summary``: extra summary values."""
    wrong = set(misclassified)
    correct = np.array([i not in wrong for i in range(n)])
    success = np.array([i in set(broken) for i in range(n)]) & correct
    d = np.where(success, eps, 0.0) if dist is None else np.asarray(list(dist), dtype=np.float64)
    records = cell_records(
        key,
        correct=correct.tolist(),
        success=success.tolist(),
        dist=d.tolist(),
        library=library,
        attack=attack,
        kind=kind,
        norm=norm,
        eps=eps,
        model=model,
        threat_model=threat_model,
        label=np.arange(n) % 10,
        **columns,
    )
    n_correct = int(correct.sum())
    row = {
        "cell": 0,
        "cell_key": key,
        "status": "ok",
        "reason": "",
        "library": library,
        "framework": "torch",
        "model": model,
        "attack": attack,
        "kind": kind,
        "norm": norm,
        "eps": eps,
        "targeted": False,
        "threat_model": threat_model,
        "run_seed": 0,
        "n": n,
        "n_correct": n_correct,
        "clean_accuracy": n_correct / n,
        "success_rate": success.sum() / n_correct,
        "success_rate_at_eps": success.sum() / n_correct,
        "robust_accuracy": (correct & ~success).sum() / n,
        "robust_accuracy_at_eps": (correct & ~success).sum() / n,
        "bounds_low": 0.0,
        "bounds_high": 1.0,
        "data_sha256": "d",
        **(summary or {}),
    }
    return row, records


def run(*cells: tuple[dict[str, Any], pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The summary and records of ``cells``, numbered (``cell``) in the given order."""
    rows = [{**row, "cell": i} for i, (row, _) in enumerate(cells)]
    records = [recs.assign(cell=i) for i, (_, recs) in enumerate(cells)]
    return pd.DataFrame(rows), pd.concat(records, ignore_index=True)
