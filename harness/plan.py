"""Plan an experiment: its cells, in table order, each keyed by a content hash.

A cell is (run seed, model, attack spec, library). Its key hashes everything that decides
its result: the resolved spec, the library and its version, the model's identity (recipe
cache stem - recipe version, hyperparameters and training-data hashes -, factory
fingerprint, or substitute recipe and target), the exact input batch, the cell seed, the
batch size and the harness version. Same experiment, same seed -> same keys, so a re-run
skips finished cells, and any change that could change a result gives a new key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from adapters import get_adapter
from harness.data import Dataset
from harness.experiment import Experiment, ModelConfig
from harness.seeding import derive_seed


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


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def model_identity(mc: ModelConfig, exp: Experiment) -> dict[str, Any]:
    """What identifies a model's weights without loading it."""
    from harness.recipes import cache_paths

    d = exp.data
    if mc.substitute_of is not None:
        target = next(m for m in exp.models if m.key == mc.substitute_of)
        return {"substitute": mc.model_dump(mode="json"), "target": model_identity(target, exp),
                "data": d.model_dump(mode="json", exclude={"scale"}),  # on [0, 1]: validated
                "seed": exp.seed}
    if mc.factory is not None:
        from harness.factory import model_fingerprint

        return {"factory": model_fingerprint(mc)}
    assert mc.recipe is not None  # validated: exactly one of recipe / factory
    return {"recipe": cache_paths(mc.recipe, mc.framework, data_path=d.path)[0].stem}


def _data_identity(data_hash: str, mc: ModelConfig) -> Any:
    """The batch model ``mc`` is given: the dataset's, mapped onto the model's bounds (keys of
    models with bounds [0, 1], given the data as loaded, are unchanged)."""
    if tuple(mc.bounds) == (0.0, 1.0):
        return data_hash
    return {"sha256": data_hash, "scaled_to": list(mc.bounds)}


def family(mc: ModelConfig) -> str:
    if mc.substitute_of is not None:
        return f"substitute:{mc.recipe}"
    return mc.recipe if mc.recipe is not None else mc.key


def plan_cells(exp: Experiment, ds: Dataset) -> list[CellTask]:
    """Every cell of ``exp`` on ``ds`` (the evaluated batch), in table order."""
    data_hash = ds.fingerprint()
    identities = {mc.key: model_identity(mc, exp) for mc in exp.models}
    frameworks = {mc.key: mc.framework for mc in exp.models}
    harness_version = _version("advharness")
    library_versions = {lib: get_adapter(lib).version_hint() for lib in exp.libraries}
    tasks: list[CellTask] = []
    for run_seed in exp.run_seeds:
        for mc in exp.models:
            for a in exp.attacks:
                if a.source == mc.key or (a.target_models and mc.key not in a.target_models):
                    continue
                spec = a.resolve()
                seed = derive_seed(run_seed, mc.key, spec.label)
                for lib in exp.libraries:
                    content = {
                        "spec": spec.to_dict(), "library": lib,
                        "library_version": library_versions[lib],
                        "model": identities[mc.key], "model_key": mc.key,
                        "source": identities.get(a.source) if a.source else None,
                        "data": _data_identity(data_hash, mc), "seed": seed,
                        "run_seed": run_seed,
                        "batch_size": exp.batch_size, "harness": harness_version,
                    }
                    key = hashlib.sha256(json.dumps(content, sort_keys=True, default=str)
                                         .encode()).hexdigest()[:24]
                    row = {"library": lib, "framework": frameworks[mc.key], "model": mc.key,
                           "family": family(mc), "attack": spec.attack, "norm": spec.norm,
                           "eps": spec.eps, "targeted": spec.targeted,
                           "threat_model": "transfer" if a.source else spec.threat_model,
                           "seed": seed, "run_seed": run_seed, "n": len(ds.x)}
                    if a.source:
                        row["source_model"] = a.source
                    tasks.append(CellTask(len(tasks), key, mc.key, a.model_dump(mode="json"),
                                          lib, seed, run_seed, row))
    return tasks
