"""The in-memory API: ``run_attacks`` on models and arrays in this process (models x attack
specs x libraries, refereed, into pandas tables), and the input checks it shares."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from advharness.cells.cell import CellInputs, CellResult, clean_predictions
from advharness.cells.dispatch import run_cell
from advharness.cells.targets import choose_targets
from advharness.config.catalogue import CLEAN_ACCURACY_FLOOR, LIBRARIES
from advharness.config.spec import AttackSpec, ResolvedSpec
from advharness.core.errors import HarnessError, one_line
from advharness.core.seeding import content_key, derive_seed, seed_everything
from advharness.models.base import WrappedModel
from advharness.models.layout import check_layout, to_layout
from advharness.reporting.run_result import RunResult, assemble
from advharness.zoo.data import fingerprint as data_fingerprint

log = logging.getLogger(__name__)


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
    """Validate and resolve specs (one-line error naming the problem).

    A dict entry may be a grid, as in experiment files (see :mod:`advharness.config.grid`): lists in
    ``eps``, ``steps``, ... and ``params`` give one spec per combination. A spec that a grid
    repeats is run once.
    """
    from pydantic import ValidationError

    from advharness.config.experiment import format_validation_error
    from advharness.config.grid import Origin, expand_attack

    out: dict[str, ResolvedSpec] = {}
    for i, a in enumerate(attacks):
        concrete: list[tuple[Any, Origin | None]]
        if isinstance(a, dict):
            expanded, problems = expand_attack(a, i)
            if problems:
                raise HarnessError(
                    "\n".join(f"attacks[{i}]{_where(loc[2:])}: {msg}" for loc, msg in problems)
                )
            concrete = [(entry, origin) for entry, origin in expanded]
        else:  # an AttackSpec, or something the validator refuses
            concrete = [(a, None)]
        for entry, origin in concrete:
            try:
                spec = entry if isinstance(entry, AttackSpec) else AttackSpec.model_validate(entry)
            except ValidationError as e:
                picked = ", ".join(
                    f"{'.'.join(map(str, path))}={v!r}" for path, v in (origin.grid if origin else ())
                )
                where = f"attacks[{i}]" + (f" (grid values {picked})" if picked else "")
                raise HarnessError(f"{where}: " + format_validation_error(e)) from None
            resolved = spec.resolve()
            out.setdefault(json.dumps(resolved.to_dict(), sort_keys=True, default=str), resolved)
    return list(out.values())


def _where(path: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def check_sizes(
    specs: Sequence[ResolvedSpec],
    shape: tuple[int, ...],
    data: str = "the inputs",
    names: Sequence[str] | None = None,
) -> None:
    """Refuse parameters that exceed the size of inputs of ``shape`` (one sample), naming
    the spec (``names[i]``, default ``attacks[i]``) and the limit."""
    from advharness.config.spec import size_problems

    for i, spec in enumerate(specs):
        for param, msg in size_problems(spec, tuple(shape), data):
            where = f"attacks[{i}]" if names is None else names[i]
            raise HarnessError(f"{where}: params.{param} {msg}")


def prepare(model: WrappedModel, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a batch for ``model``; return it in the model's layout and the clean logits.

    ``x`` may be any array-like of numbers (a nested list too); ``y`` any of integers."""
    try:
        x = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise HarnessError(
            f"inputs for model {model.name!r} are not a numeric array of one shape ({one_line(e)})"
        ) from None
    if x.ndim < 2:
        raise HarnessError(f"inputs must be a batch (N, ...), got shape {x.shape}")
    if len(x) == 0:
        raise HarnessError(f"inputs for model {model.name!r} are an empty batch (0 samples)")
    check_layout(x, model)
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
    return_adversarials: bool = False,
    clean_accuracy_floor: float = CLEAN_ACCURACY_FLOOR,
    return_traces: bool = False,
    probes: bool = True,
) -> RunResult:
    """Attack every model with every spec from every library; referee each cell.

    ``x`` is an NCHW (or flat) float32 batch inside the models' bounds, ``y`` int labels.
    All inputs are validated before any attack runs. ``return_adversarials``: also return
    each cell's adversarial examples (``RunResult.adversarials``, by ``cell``);
    ``return_traces``: each white-box cell's loss traces (``RunResult.traces``). Cells whose
    model classifies less than ``clean_accuracy_floor`` of ``x`` correctly are flagged
    ``low_clean_accuracy``. ``probes``: probe every model on ``x`` first
    (``RunResult.probes``, see :mod:`advharness.models.probes`).
    """
    from advharness.adapters import get_adapter

    for lib in libraries:
        get_adapter(lib)
    specs = resolve_specs(attacks)
    if len({m.name for m in models}) != len(models):
        raise HarnessError("model names must be unique")
    by_name = {m.name: m for m in models}
    for spec in specs:
        for name in (spec.source,) + (spec.target_models or ()):
            if name is not None and name not in by_name:
                raise HarnessError(
                    f"{spec.label}: model {name!r} is not one of the models ({', '.join(by_name)})"
                )
    prepared = {m.name: prepare(m, x, y) for m in models}
    check_sizes(specs, np.shape(np.asarray(x, dtype=np.float32))[1:])  # prepare: it converts
    jobs: list[tuple[CellInputs, ResolvedSpec, str, int]] = []
    for m in models:
        for spec in specs:
            if spec.source == m.name or (spec.target_models and m.name not in spec.target_models):
                continue  # a transfer spec targets every model but its source, or those listed
            inputs = cell_inputs(by_name, prepared.__getitem__, m.name, spec, y, seed)
            for lib in libraries:
                jobs.append((inputs, spec, lib, derive_seed(seed, m.name, spec.for_cell().label)))
    results = [
        run_cell(inp, spec.for_cell(), lib, s, batch_size) for inp, spec, lib, s in _progress(jobs, progress)
    ]
    data_hash = data_fingerprint(x, y)
    out = _collect(results, jobs, data_hash, clean_accuracy_floor)
    if return_adversarials:
        out.adversarials = {i: r.x_adv for i, r in enumerate(results) if r.x_adv is not None}
    if return_traces:
        out.traces = {i: r.traces for i, r in enumerate(results) if r.traces is not None}
    if probes:
        from advharness.execution.probing import probe_entry
        from advharness.reporting.run_result import probes_table

        entries = [probe_entry(m.name, m, prepared[m.name][0], y, batch_size, data_hash) for m in models]
        out.probes = probes_table(entries)
    return out


def _progress(jobs: list[Any], show: bool) -> Iterable[Any]:
    if not show:
        return jobs
    from rich.progress import track

    return track(jobs, description="cells", transient=True)


def _collect(
    results: list[CellResult],
    jobs: list[tuple[CellInputs, ResolvedSpec, str, int]],
    data_hash: str,
    clean_accuracy_floor: float,
) -> RunResult:
    cells = []
    for res, (inputs, spec, lib, seed) in zip(results, jobs, strict=True):
        cell = spec.for_cell()
        key = content_key(
            {
                "spec": cell.to_dict(),
                "library": lib,
                "model_key": inputs.model.name,
                "data": data_hash,
                "seed": seed,
            }
        )
        row = {
            **res.summary,
            "cell_key": key,
            "data_sha256": data_hash,
            "spec": json.dumps(cell.to_dict(), sort_keys=True, default=str),
            "clean_accuracy_floor": clean_accuracy_floor,
        }
        cells.append((row, res.records, spec.eps))
    return assemble(cells)


def cell_inputs(
    models: dict[str, WrappedModel],
    prepared: Callable[[str], tuple[np.ndarray, np.ndarray]],
    name: str,
    spec: ResolvedSpec,
    y: np.ndarray,
    seed: int,
) -> CellInputs:
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
    model = models[name]
    # a randomized model's evaluations: the same draws for every cell judged on it
    seed_everything(derive_seed(seed, "clean", (model.deployed or model).name))
    clean = clean_predictions(model, xm, y, logits)
    return CellInputs(model, xm, y, clean, targets, source)
