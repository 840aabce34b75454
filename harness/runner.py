"""Run attack grids: models x attack specs x libraries, refereed, into pandas tables."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.catalogue import LIBRARIES
from harness.cell import CellInputs, CellResult, run_cell
from harness.errors import HarnessError
from harness.models import WrappedModel, one_line
from harness.referee import flag_gradient_masking
from harness.seeding import derive_seed
from harness.spec import AttackSpec, ResolvedSpec
from harness.targets import choose_targets

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a run produced: per-cell ``summary`` and per-sample ``records`` DataFrames."""

    summary: pd.DataFrame
    records: pd.DataFrame
    manifest: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def table(self) -> pd.DataFrame:
        """The head-to-head table (see :func:`harness.tables.head_to_head`)."""
        from harness.tables import head_to_head

        return head_to_head(self.summary)


def to_layout(x: np.ndarray, model: WrappedModel) -> np.ndarray:
    """An NCHW batch in ``model``'s layout (NHWC transposed, flat reshaped)."""
    layouts = {
        "NCHW": lambda a: a,
        "NHWC": lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1)),
        "flat": lambda a: a.reshape(len(a), -1),
    }
    return np.ascontiguousarray(layouts[model.layout](x), dtype=np.float32)


def check_labels(y: np.ndarray, n: int, nb_classes: int) -> np.ndarray:
    try:
        y = np.asarray(y)
    except (TypeError, ValueError) as e:
        raise HarnessError(f"labels are not an array of one shape ({one_line(e)})") from None
    if y.shape != (n,):
        raise HarnessError(f"labels must have shape ({n},), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise HarnessError(f"labels must be integers, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= nb_classes):
        raise HarnessError(f"labels out of range [0, {nb_classes - 1}]: min {y.min()}, max {y.max()}")
    return y.astype(np.int64)


def resolve_specs(attacks: Iterable[AttackSpec | dict[str, Any]]) -> list[ResolvedSpec]:
    """Validate and resolve specs (one-line error naming the problem)."""
    from pydantic import ValidationError

    from harness.experiment import format_validation_error

    out = []
    for i, a in enumerate(attacks):
        try:
            spec = a if isinstance(a, AttackSpec) else AttackSpec.model_validate(a)
        except ValidationError as e:
            raise HarnessError(f"attacks[{i}]: " + format_validation_error(e)) from None
        out.append(spec.resolve())
    return out


def prepare(model: WrappedModel, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a batch for ``model``; return it in the model's layout and the clean logits.

    ``x`` may be any array-like of numbers (a nested list too); ``y`` any of integers."""
    try:
        x = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise HarnessError(f"inputs for model {model.name!r} are not a numeric array of one "
                           f"shape ({one_line(e)})") from None
    if x.ndim < 2:
        raise HarnessError(f"inputs must be a batch (N, ...), got shape {x.shape}")
    if len(x) == 0:
        raise HarnessError(f"inputs for model {model.name!r} are an empty batch (0 samples)")
    xm = to_layout(x, model)
    model.check_inputs(xm)
    check_labels(y, len(xm), model.nb_classes)
    return xm, model.check_outputs(xm)


def run_attacks(
    models: Sequence[WrappedModel],
    x: np.ndarray,
    y: np.ndarray,
    attacks: Iterable[AttackSpec | dict[str, Any]],
    libraries: Sequence[str] = LIBRARIES,
    *,
    seed: int = 0,
    batch_size: int = 256,
    progress: bool = False,
) -> RunResult:
    """Attack every model with every spec from every library; referee each cell.

    ``x`` is an NCHW (or flat) float32 batch inside the models' bounds, ``y`` int labels.
    All inputs are validated before any attack runs.
    """
    from adapters import get_adapter

    for lib in libraries:
        get_adapter(lib)
    specs = resolve_specs(attacks)
    if len({m.name for m in models}) != len(models):
        raise HarnessError("model names must be unique")
    by_name = {m.name: m for m in models}
    for spec in specs:
        for name in (spec.source,) + (spec.target_models or ()):
            if name is not None and name not in by_name:
                raise HarnessError(f"{spec.label}: model {name!r} is not one of the models "
                                   f"({', '.join(by_name)})")
    prepared = {m.name: prepare(m, x, y) for m in models}
    jobs: list[tuple[CellInputs, ResolvedSpec, str, int]] = []
    for m in models:
        for spec in specs:
            if spec.source == m.name or (spec.target_models and m.name not in spec.target_models):
                continue  # a transfer spec targets every model but its source, or those listed
            inputs = cell_inputs(by_name, prepared.__getitem__, m.name, spec, y, seed)
            for lib in libraries:
                jobs.append((inputs, spec, lib, derive_seed(seed, m.name, spec.label)))
    results = [run_cell(inp, spec, lib, s, batch_size) for inp, spec, lib, s in _progress(jobs, progress)]
    return _collect(results, specs, jobs)


def _progress(jobs: list[Any], show: bool) -> Iterable[Any]:
    if not show:
        return jobs
    from rich.progress import track

    return track(jobs, description="cells", transient=True)


def _collect(
    results: list[CellResult], specs: list[ResolvedSpec],
    jobs: list[tuple[CellInputs, ResolvedSpec, str, int]],
) -> RunResult:
    rows, recs = [], []
    for i, (res, (_, spec, _, _)) in enumerate(zip(results, jobs, strict=True)):
        row = {"cell": i, **res.summary, "spec": _spec_json(spec)}
        rows.append(row)
        if res.records is not None:
            keys = ("cell", "library", "framework", "model", "attack", "norm", "eps", "targeted")
            r = res.records.assign(**{k: row[k] for k in keys})
            recs.append(r[list(keys) + list(res.records.columns)])
    summary = pd.DataFrame(rows)
    summary["beats_white_box"] = flag_gradient_masking(summary)
    records = pd.concat(recs, ignore_index=True) if recs else pd.DataFrame()
    return RunResult(summary=summary, records=records)


def _spec_json(spec: ResolvedSpec) -> str:
    import json

    return json.dumps(spec.to_dict(), sort_keys=True, default=str)


def cell_inputs(models: dict[str, WrappedModel],
                prepared: Callable[[str], tuple[np.ndarray, np.ndarray]], name: str,
                spec: ResolvedSpec, y: np.ndarray, seed: int) -> CellInputs:
    """A cell's inputs on model ``name`` (``prepared(name)``: its batch and clean logits).

    Targets are drawn once per (experiment seed, mode) from the model's own logits, so
    every library gets the same ones; a transfer spec also gets its source's inputs.
    """
    xm, logits = prepared(name)
    y = np.asarray(y).astype(np.int64)
    targets = None
    if spec.targeted:
        targets = choose_targets(y, logits, spec.target_mode, derive_seed(seed, "targets"))
    source = None
    if spec.source is not None:
        sx, slogits = prepared(spec.source)
        source = CellInputs(models[spec.source], sx, y, slogits.argmax(axis=1), targets)
    return CellInputs(models[name], xm, y, logits.argmax(axis=1), targets, source)
