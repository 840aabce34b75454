"""Plan an experiment: its cells, in table order, each keyed by a content hash.

A cell is (run seed, model, attack spec, library). Its key hashes everything that decides
its result: the resolved spec (without a minimum-norm attack's eps, which only changes
reporting), the library and its version, the model's identity (recipe
cache stem - recipe version, hyperparameters and training-data hashes -, factory
fingerprint, or substitute recipe and target, and in every case the hash of the built
model's parameters and buffers, so weights a factory loads by itself or a changed helper
module that changes them give new keys), the exact input batch, the cell seed, the batch
size and the harness version. Same experiment, same seed -> same keys, so a re-run skips
finished cells, and any change that could change a result gives a new key.

With ``checks: [convergence]``, each iterative fixed-budget cell also gets a convergence
cell (2x steps and restarts on the first ``convergence_samples`` samples, see
:mod:`advharness.config.checks`), planned after all ordinary cells and keyed by its base
cell's key, its own spec and the subsample.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from advharness.adapters import get_adapter
from advharness.config.checks import CONVERGENCE, convergence_spec
from advharness.config.experiment import Experiment, ModelConfig
from advharness.config.spec import AttackSpec
from advharness.core.seeding import content_key, derive_seed
from advharness.core.versions import package_version
from advharness.zoo.data import Dataset


@dataclass(frozen=True)
class CellTask:
    """One cell to run: picklable, self-describing (fault rows are built from ``row``)."""

    index: int
    key: str
    model: str
    spec: dict[str, Any]  # AttackSpec fields (validated again in the worker)
    library: str
    seed: int  # the cell's seed
    run_seed: int  # the experiment seed this cell belongs to
    row: dict[str, Any] = field(default_factory=dict)  # identifying columns of its table row
    #: The radius this task reports at (a minimum-norm spec's eps; the cell runs without it).
    report_eps: float | None = None
    #: parameter hashes of the models the cell runs on (its model, a transfer source), as
    #: planned: a worker checks that the models it built are these
    params: dict[str, str] = field(default_factory=dict)
    #: Run on the first this many samples of the batch only (a convergence check); None: all.
    samples: int | None = None


def model_identity(mc: ModelConfig, exp: Experiment, params: Mapping[str, str]) -> dict[str, Any]:
    """What identifies a model: how it is made (read without loading it) and ``params[key]``,
    the hash of its built parameters (:meth:`WrappedModel.parameter_hash`; None when the
    model was not built)."""
    from advharness.zoo.recipes import cache_paths

    d = exp.data
    built = {"params": params.get(mc.key)}
    if mc.defense is not None:  # a defended variant: the defense and what it is built from
        entries = {m.key: m for m in exp.model_entries()}
        bases = [mc.defense.of] if mc.defense.of is not None else list(mc.defense.members or ())
        return {
            "defense": mc.defense.model_dump(mode="json"),
            "resolved_params": mc.defense.resolved_params,
            "surrogate": mc.surrogate,
            "of": [model_identity(entries[b], exp, params) for b in bases],
            **built,
        }
    if mc.substitute_of is not None:
        target = next(m for m in exp.models if m.key == mc.substitute_of)
        return {
            "substitute": mc.model_dump(mode="json"),
            "target": model_identity(target, exp, params),
            "data": d.model_dump(mode="json", exclude={"scale"}),  # on [0, 1]: validated
            "seed": exp.seed,
            **built,
        }
    if mc.factory is not None:
        from advharness.core.frameworks import framework_available
        from advharness.zoo.factory import model_fingerprint

        if not framework_available(mc.framework):  # not imported: its cells are unsupported rows
            return {"factory": mc.factory, "framework_missing": mc.framework, **built}
        return {"factory": model_fingerprint(mc), **built}
    if mc.robustbench is not None:
        from advharness.core.frameworks import missing_framework_reason
        from advharness.zoo.robustbench import robustbench_fingerprint

        if missing_framework_reason("robustbench") is not None:  # its cells are unsupported rows
            return {"robustbench": mc.robustbench, "framework_missing": "robustbench", **built}
        return {"robustbench": robustbench_fingerprint(mc), **built}
    assert mc.recipe is not None  # validated: exactly one of recipe / factory / robustbench
    return {"recipe": cache_paths(mc.recipe, mc.framework, data_path=d.path)[0].stem, **built}


def _data_identity(data_hash: str, mc: ModelConfig) -> Any:
    """The batch model ``mc`` is given: the dataset's, mapped onto the model's bounds (keys of
    models with bounds [0, 1], given the data as loaded, are unchanged)."""
    if tuple(mc.bounds) == (0.0, 1.0):
        return data_hash
    return {"sha256": data_hash, "scaled_to": list(mc.bounds)}


def defense_columns(mc: ModelConfig) -> dict[str, str]:
    """A cell's defense columns: ``defense`` (the kind, "" for none), ``defended_model``
    (the model the verdicts are on: a surrogate's deployed defense, else the model itself)
    and ``adaptive`` (``bpda``, ``eot<k>`` or "")."""
    d = mc.defense
    if d is None:
        return {"defense": "", "defended_model": mc.key, "adaptive": ""}
    adaptive = ""
    if mc.surrogate:
        adaptive = f"eot{d.resolved_eot}" if d.randomized else "bpda"
    return {"defense": d.defense, "defended_model": d.key, "adaptive": adaptive}


def family(mc: ModelConfig) -> str:
    if mc.substitute_of is not None:
        return f"substitute:{mc.recipe}"
    return mc.recipe if mc.recipe is not None else mc.key


def plan_cells(exp: Experiment, ds: Dataset, params: Mapping[str, str]) -> list[CellTask]:
    """Every cell of ``exp`` on ``ds`` (the evaluated batch), in table order.

    ``params``: each built model's parameter hash by key (computed once, by the process that
    plans; workers take the keys from the tasks). A minimum-norm spec's ``eps`` is a
    reporting radius only: the cell is planned (keyed, seeded, run) without it, so specs that
    differ only in that radius share one cell.
    """
    data_hash = ds.fingerprint()
    entries = exp.model_entries()
    attacks = exp.attack_entries()
    identities = {mc.key: model_identity(mc, exp, params) for mc in entries}
    frameworks = {mc.key: mc.framework for mc in entries}
    devices = {mc.key: mc.device for mc in entries}
    harness_version = package_version("advharness")
    library_versions = {lib: get_adapter(lib).version_hint() for lib in exp.libraries}
    tasks: list[CellTask] = []
    twins: list[tuple[CellTask, AttackSpec]] = []
    check_samples = min(exp.convergence_samples, len(ds.x))
    for run_seed in exp.run_seeds:
        for mc in entries:
            defended = defense_columns(mc)
            for a in attacks:
                if a.source == mc.key or (a.target_models and mc.key not in a.target_models):
                    continue
                if mc.surrogate and (a.source or a.resolve().threat_model != "white-box"):
                    continue  # a surrogate is for white-box attacks; the rest run on the defense
                reported = a.resolve()
                cell_spec = reported.for_cell()
                seed = derive_seed(run_seed, mc.key, cell_spec.label)
                twin = convergence_spec(a) if CONVERGENCE in exp.checks else None
                for lib in exp.libraries:
                    spec = cell_spec.for_library(lib)  # a black-box cell's query mode
                    content = {
                        "spec": spec.to_dict(),
                        "library": lib,
                        "library_version": library_versions[lib],
                        "model": identities[mc.key],
                        "model_key": mc.key,
                        "source": identities.get(a.source) if a.source else None,
                        "data": _data_identity(data_hash, mc),
                        "seed": seed,
                        "run_seed": run_seed,
                        "batch_size": exp.batch_size,
                        "harness": harness_version,
                    }
                    if devices[mc.key] != "cpu":  # CPU keys as before any device existed
                        content["device"] = devices[mc.key].partition(":")[0]
                    key = content_key(content)
                    row = {
                        **spec.columns(),
                        "library": lib,
                        "framework": frameworks[mc.key],
                        "device": devices[mc.key],
                        "model": mc.key,
                        "family": family(mc),
                        "threat_model": "transfer" if a.source else spec.threat_model,
                        "seed": seed,
                        "run_seed": run_seed,
                        "n": len(ds.x),
                        "cell_key": key,
                        "data_sha256": data_hash,
                        "batch_size": exp.batch_size,
                        "spec": json.dumps(spec.to_dict(), sort_keys=True, default=str),
                        **defended,
                    }
                    if a.source:
                        row["source_model"] = a.source
                    used = {k: params[k] for k in (mc.key, a.source) if k is not None and k in params}
                    task = CellTask(
                        len(tasks),
                        key,
                        mc.key,
                        a.model_dump(mode="json"),
                        lib,
                        seed,
                        run_seed,
                        row,
                        report_eps=reported.eps,
                        params=used,
                    )
                    tasks.append(task)
                    if twin is not None:
                        twins.append((task, twin))
    for base, twin in twins:  # after every ordinary cell: their table order is unchanged
        tasks.append(_convergence_task(base, twin, check_samples, len(tasks)))
    return tasks


def _convergence_task(base: CellTask, twin: AttackSpec, samples: int, index: int) -> CellTask:
    """The convergence check of ``base``: ``twin`` (2x steps and restarts, see
    :mod:`advharness.config.checks`) on the first ``samples`` samples, keyed by the base
    cell's key, the twin spec and the subsample; same seed as the base cell."""
    spec = twin.resolve().for_cell().for_library(base.library)
    check = {"check": CONVERGENCE, "check_of": base.key, "check_samples": samples}
    key = content_key({"spec": spec.to_dict(), **check})
    row = {
        **base.row,
        **spec.columns(),
        **check,
        "n": samples,
        "cell_key": key,
        "spec": json.dumps(spec.to_dict(), sort_keys=True, default=str),
    }
    return replace(
        base,
        index=index,
        key=key,
        spec=twin.model_dump(mode="json"),
        row=row,
        report_eps=None,
        samples=samples,
    )
