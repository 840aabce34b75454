"""Results on disk: ``results/<run>/`` with Parquet tables, a CSV summary and a manifest.

Layout of a results directory::

    cells/            one file pair per finished cell (see :mod:`harness.store`)
    plans/            what each run asked for (order, reporting radii, clean-accuracy floor)
    probes/           each model's probes on the run's data
    summary.parquet   one row per cell (status, reason, metrics, library call, spec)
    summary.csv       the same, for spreadsheets
    records.parquet   one row per (cell, sample): predictions, flags, norms
    manifest.json     versions, experiment, resolved specs, seed, input and model info
    logs/             the run's and the workers' logs

Each file is written atomically (a temporary file renamed into place). A stopped run keeps
``cells/``, ``plans/`` and ``logs/`` (it resumes from them) and does not rewrite the tables;
:func:`read_results` reads the cells, so it sees every stored cell either way.
"""

from __future__ import annotations

import json
import logging
import platform
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from advharness.core.atomic import atomic_write
from advharness.core.errors import HarnessError
from advharness.core.versions import package_version
from advharness.reporting.store import CellStore

if TYPE_CHECKING:
    from advharness.config.experiment import Experiment
    from advharness.models.base import WrappedModel
    from advharness.reporting.run_result import RunResult
    from advharness.zoo.data import Dataset

PACKAGES = (
    "advharness",
    "adversarial-robustness-toolbox",
    "foolbox",
    "cleverhans",
    "torch",
    "tensorflow",
    "keras",
    "numpy",
    "pandas",
    "eagerpy",
    "scipy",
)
FILES = ("summary.parquet", "summary.csv", "records.parquet", "manifest.json")

log = logging.getLogger(__name__)


def versions() -> dict[str, str]:
    """Installed versions of the harness, the three libraries and the frameworks."""
    return {"python": platform.python_version(), **{p: package_version(p) for p in PACKAGES}}


def git_commit(directory: str | Path | None = None) -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` of the git checkout the harness runs from (the
    checkout whose top level holds ``directory``, default: this package's parent), or None
    when it is not one (an installed package, no git). Never raises."""
    import subprocess

    # <repo>/harness/reporting/results.py
    root = Path(directory) if directory is not None else Path(__file__).resolve().parents[2]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root.resolve():
            return None  # the package sits inside some other repository
        return {
            "commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        }
    except (OSError, subprocess.SubprocessError):
        return None


def build_manifest(exp: Experiment, ds: Dataset, models: list[WrappedModel]) -> dict[str, Any]:
    return {
        "experiment": exp.model_dump(mode="json"),
        "git": git_commit(),
        "resolved_specs": [a.resolve().to_dict() for a in exp.attack_entries()],
        "seed": exp.seed,
        "data": {
            "dataset": ds.name,
            "split": ds.split,
            "n": len(ds.x),
            "source": ds.source,
            "sha256": ds.fingerprint(),
        },
        "models": [
            {
                **m.describe(),
                **getattr(m, "recipe_info", {}),
                **({"substitute": m.substitute_info} if hasattr(m, "substitute_info") else {}),
                **({"defense": m.defense_info} if m.defense_info else {}),
            }
            for m in models
        ],
        "versions": versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
    }


def write_results(result: RunResult, target: Path) -> Path:
    """Write ``result``'s tables and manifest into ``target``, each file atomically (the
    directory's ``cells/`` store, if any, is left as it is)."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    writers: dict[str, Any] = {
        "summary.parquet": lambda p: result.summary.to_parquet(p, index=False),
        "summary.csv": lambda p: result.summary.to_csv(p, index=False),
        "records.parquet": lambda p: result.records.to_parquet(p, index=False),
    }
    for name, write in writers.items():
        atomic_write(target / name, write)
    write_manifest(result.manifest, target)
    return target


def write_manifest(manifest: Mapping[str, Any], target: Path) -> Path:
    """Write ``manifest`` as ``<target>/manifest.json`` (atomically); returns its path."""
    path = Path(target) / "manifest.json"
    atomic_write(path, lambda p: p.write_text(json.dumps(manifest, indent=2, default=str)))
    return path


def read_adversarials(path: str | Path, seen: bool = False) -> dict[int, np.ndarray]:
    """The adversarial examples stored in a results directory (``save_adversarials: true``),
    by the summary's ``cell``, each in the attacked model's layout; cells without stored
    adversarials (failed, unsupported, or run without the option) are absent. ``seen``:
    instead, each white-box cell's best valid adversarial seen on the attack's path (the
    clean input where none; ``seen_success`` in the records says which)."""
    summary = read_results(path).summary
    store = CellStore(path)
    out = {}
    for cell, key in zip(summary["cell"], summary["cell_key"], strict=True):
        x_adv = store.read_adversarials(str(key), "x_seen" if seen else "x_adv")
        if x_adv is not None:
            out[int(cell)] = x_adv
    return out


def read_adversarials_by_key(path: str | Path, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """The adversarial examples stored in a results directory (``cells/<key>.adv.npz``), by
    ``cell_key``: those of ``keys`` (default: every stored cell); cells without stored
    adversarials are absent. For comparing two libraries' outputs
    (:func:`advharness.analytics.agreement.library_agreement`)."""
    store = CellStore(path)
    out = {}
    for key in store.keys() if keys is None else keys:
        x_adv = store.read_adversarials(str(key))
        if x_adv is not None:
            out[str(key)] = x_adv
    return out


def read_traces(path: str | Path) -> dict[int, dict[str, np.ndarray]]:
    """The loss traces stored in a results directory (``save_traces: true``), by the
    summary's ``cell``: ``loss`` (samples, passes) float32, ``length``, ``start`` (see
    :meth:`advharness.judging.trace.LossTraces.arrays`); cells without traces are absent."""
    summary = read_results(path).summary
    store = CellStore(path)
    out = {}
    for cell, key in zip(summary["cell"], summary["cell_key"], strict=True):
        traces = store.read_traces(str(key))
        if traces is not None:
            out[int(cell)] = traces
    return out


def read_results(path: str | Path) -> RunResult:
    """Load a results directory: every cell in its store (``cells/``, earlier runs' too,
    whether or not the last run finished), else the tables written by :func:`write_results`."""
    from advharness.reporting.run_result import RunResult

    p = Path(path)
    if not p.is_dir():
        raise HarnessError(f"{p} is not a results directory (not a directory)")
    manifest_path = p / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    store = CellStore(p)
    if store.keys():
        result = collect_store(store)
        result.manifest, result.path = manifest, p
        return result
    missing = [f for f in FILES if not (p / f).is_file()]
    if missing:
        raise HarnessError(f"{p} is not a results directory (no stored cells; missing {', '.join(missing)})")
    from advharness.reporting.run_result import probes_table

    return RunResult(
        summary=pd.read_parquet(p / "summary.parquet"),
        records=pd.read_parquet(p / "records.parquet"),
        manifest=manifest,
        path=p,
        probes=probes_table(store.all_probes()),
    )


def collect_store(store: CellStore) -> RunResult:
    """The tables from **every** stored cell of a run directory, earlier runs' too.

    What the runs asked for comes from their recorded plans (``plans/``): rows are in the
    latest plan's order (cells no plan names last, by finishing time); a minimum-norm cell
    gives one row per radius any run asked for; the latest plan's clean-accuracy floor
    flags ``low_clean_accuracy``. A stored cell whose setting (model, library, framework,
    spec, run seed, data, batch size, source) recurs in another cell with a different
    content key (a library, model or harness version changed) is *superseded*: the cell
    planned last (else the newest) is kept, and ``RunResult.superseded`` counts the others.
    """
    from advharness.reporting.run_result import assemble, probes_table

    stored = {k: store.read(k) for k in store.keys()}
    planned_at: dict[str, float] = {}
    index: dict[str, int] = {}
    radii: dict[str, list[float | None]] = {}
    floor: dict[str, float] = {}
    for plan in store.plans():  # oldest first: the latest plan has the last word
        first: dict[str, int] = {}
        for cell in plan.get("cells", []):
            first.setdefault(cell["key"], int(cell["index"]))
            have = radii.setdefault(cell["key"], [])
            if cell.get("report_eps") not in have:
                have.append(cell.get("report_eps"))
        for key, i in first.items():
            planned_at[key], index[key] = float(plan.get("planned_at", 0.0)), i
            if "clean_accuracy_floor" in plan:
                floor[key] = float(plan["clean_accuracy_floor"])

    def recency(key: str) -> float:
        return max(planned_at.get(key, 0.0), float(stored[key][0].get("finished_at") or 0.0))

    latest: dict[tuple[str, ...], str] = {}
    for key in sorted(stored, key=recency):
        latest[_setting(stored[key][0])] = key
    keep = sorted(
        set(latest.values()),
        key=lambda k: (
            -planned_at.get(k, -1.0) if k in planned_at else float("inf"),
            index.get(k, 0),
            recency(k),
            k,
        ),
    )
    cells: list[tuple[dict[str, Any], pd.DataFrame | None, float | None]] = []
    for key in keep:
        summary, records = stored[key]
        summary = {**summary, "cell_key": key}
        if key in floor:
            summary["clean_accuracy_floor"] = floor[key]
        minimal = summary.get("kind") == "minimal"
        for eps in (radii.get(key) or [None]) if minimal else [summary.get("eps")]:
            cells.append((summary, records, eps))
    superseded = len(stored) - len(keep)
    if superseded:
        log.warning(
            "%s: %d stored cells superseded by newer cells of the same setting (a "
            "library, model or harness version changed); left out of the tables",
            store.dir,
            superseded,
        )
    result = assemble(cells)
    result.superseded = superseded
    result.probes = probes_table(store.all_probes())
    return result


def _setting(summary: dict[str, Any]) -> tuple[str, ...]:
    """What a cell is for the reader: the same setting under another content key is a newer
    or older version of the same cell."""
    return tuple(
        str(summary.get(k))
        for k in (
            "model",
            "library",
            "framework",
            "spec",
            "run_seed",
            "data_sha256",
            "batch_size",
            "source_model",
        )
    )


def describe_cell(summary: Any, key: str) -> str:
    """Everything stored about one cell (its content key, or a unique prefix of it)."""
    rows = summary[summary["cell_key"].astype(str).str.startswith(key)]
    if rows["cell_key"].nunique() != 1:
        raise HarnessError(
            f"--cell {key}: matches {rows['cell_key'].nunique()} stored cells "
            "(give more of the key shown by --format csv or summary.csv)"
        )
    row = rows.iloc[0]
    out = []
    for col, value in row.items():
        if (
            col in ("traceback", "library_call", "spec")
            or value is None
            or (isinstance(value, float) and value != value)
        ):
            continue
        out.append(f"{col}: {value}")
    for col in ("spec", "library_call"):
        if isinstance(row.get(col), str) and row[col]:
            out.append(f"{col}:\n" + json.dumps(json.loads(row[col]), indent=2, sort_keys=True))
    if isinstance(row.get("traceback"), str) and row["traceback"]:
        out.append("traceback:\n" + row["traceback"])
    return "\n".join(out)
