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
from harness.models import WrappedModel
from harness.referee import CLEAN_ACCURACY_FLOOR, flag_gradient_masking, flag_low_clean_accuracy
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
    y = np.asarray(y)
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


def check_sizes(specs: Sequence[ResolvedSpec], shape: tuple[int, ...], data: str = "the inputs",
                names: Sequence[str] | None = None) -> None:
    """Refuse parameters that exceed the size of inputs of ``shape`` (one sample), naming
    the spec (``names[i]``, default ``attacks[i]``) and the limit."""
    from harness.spec import size_problems

    for i, spec in enumerate(specs):
        for param, msg in size_problems(spec, tuple(shape), data):
            where = f"attacks[{i}]" if names is None else names[i]
            raise HarnessError(f"{where}: params.{param} {msg}")


def prepare(model: WrappedModel, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a batch for ``model``; return it in the model's layout and the clean logits."""
    if x.ndim < 2:
        raise HarnessError(f"inputs must be a batch (N, ...), got shape {x.shape}")
    xm = to_layout(np.asarray(x, dtype=np.float32), model)
    model.check_inputs(xm)
    check_labels(y, len(xm), model.nb_classes)
    model.check_outputs(xm)
    return xm, model.predict_logits(xm)


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
    clean_accuracy_floor: float = CLEAN_ACCURACY_FLOOR,
) -> RunResult:
    """Attack every model with every spec from every library; referee each cell.

    ``x`` is an NCHW (or flat) float32 batch inside the models' bounds, ``y`` int labels.
    All inputs are validated before any attack runs. Cells whose model classifies less than
    ``clean_accuracy_floor`` of ``x`` correctly are flagged ``low_clean_accuracy``.
    """
    from adapters import get_adapter

    for lib in libraries:
        get_adapter(lib)
    specs = resolve_specs(attacks)
    check_sizes(specs, np.shape(x)[1:])
    y = np.asarray(y)
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
    out = _collect(results, specs, jobs)
    out.summary["low_clean_accuracy"] = flag_low_clean_accuracy(out.summary, clean_accuracy_floor)
    return out


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
