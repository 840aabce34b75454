"""Hand-built records and summary rows in the shape ``read_results`` gives them, for the
analytics tests (every value is chosen by the test that uses it)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def cell_records(
    key: str,
    *,
    correct: list[bool],
    success: list[bool],
    dist: list[float],
    library: str = "art",
    attack: str = "cw",
    kind: str = "minimal",
    norm: str = "l2",
    eps: float = float("nan"),
    model: str = "m",
    cell: int = 0,
    run_seed: int = 0,
    success_at_eps: list[bool] | None = None,
    **extra: Any,
) -> pd.DataFrame:
    """One cell's records: ``dist`` is the perturbation in ``norm`` (the other norms get
    the same numbers; only ``norm`` is read)."""
    n = len(correct)
    d = np.asarray(dist, dtype=np.float64)
    ok = np.asarray(success, bool)
    at_eps = ok if success_at_eps is None else np.asarray(success_at_eps, bool)
    frame = pd.DataFrame(
        {
            "cell": cell,
            "cell_key": key,
            "library": library,
            "framework": "torch",
            "model": model,
            "attack": attack,
            "kind": kind,
            "norm": norm,
            "eps": eps,
            "targeted": False,
            "threat_model": "white-box",
            "run_seed": run_seed,
            "sample": np.arange(n),
            "label": 0,
            "target": -1,
            "correct": np.asarray(correct, bool),
            "success": ok,
            "success_at_eps": at_eps,
            **{k: d for k in ("l0", "l1", "l2", "linf")},
        }
    )
    for name, values in extra.items():
        frame[name] = values
    return frame


def summary_row(**values: Any) -> dict[str, Any]:
    """A summary row of an ``ok`` white-box cell with ``values`` over the defaults."""
    row = {
        "cell": 0,
        "cell_key": "k",
        "status": "ok",
        "reason": "",
        "library": "art",
        "framework": "torch",
        "model": "m",
        "attack": "pgd",
        "kind": "fixed",
        "norm": "linf",
        "eps": 0.1,
        "targeted": False,
        "threat_model": "white-box",
        "run_seed": 0,
        "steps": 10,
        "step_size": 0.01,
        "n": 8,
        "n_correct": 6,
        "bounds_low": 0.0,
        "bounds_high": 1.0,
    }
    return {**row, **values}
