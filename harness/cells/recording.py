"""A white-box cell's path recording: the recorder for its batch, and its summary columns."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from advharness.config.spec import ResolvedSpec
from advharness.judging.path import PathRecorder
from advharness.models.base import WrappedModel

#: Summary columns of path recording (white-box cells; dropped from transfer rows, where
#: they would describe the source).
PATH_SUMMARY = ("n_silent_success", "n_incomplete_optimization", "path_rows", "path_rows_ambiguous")


def make_recorder(
    model: WrappedModel,
    x: np.ndarray,
    y: np.ndarray,
    targets: np.ndarray | None,
    clean_pred: np.ndarray,
    spec: ResolvedSpec,
) -> PathRecorder:
    """The recorder of a white-box cell of ``spec`` on ``model`` and the batch ``x`` (model
    layout), ``y`` labels, ``targets`` or None, ``clean_pred`` the clean predictions."""
    flat = x.reshape(len(x), -1)
    return PathRecorder(
        model.path_ops(x, spec.norm),
        y=y,
        targets=targets,
        correct=clean_pred == y,
        varies=np.ptp(flat, axis=1) > 0 if flat.size else np.zeros(len(flat), bool),
        bounds=model.bounds,
        norm=spec.norm,
        eps=spec.eps,
        enforce_eps=spec.kind == "fixed",
    )


def path_summary(records: pd.DataFrame, recorder: PathRecorder) -> dict[str, Any]:
    """Per-cell counts: silent successes (I3), incomplete optimizations (I4), rows seen and
    rows left unattributed."""
    return {
        "n_silent_success": int(records["silent_success"].sum()),
        "n_incomplete_optimization": int(records["incomplete_optimization"].sum()),
        "path_rows": recorder.rows,
        "path_rows_ambiguous": recorder.rows_ambiguous,
    }
