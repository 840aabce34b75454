"""Results on disk: ``results/<run>/`` with Parquet tables, a CSV summary and a manifest.

Layout of a results directory::

    summary.parquet   one row per cell (status, reason, metrics, library call, spec)
    summary.csv       the same, for spreadsheets
    records.parquet   one row per (cell, sample): predictions, flags, norms
    manifest.json     versions, experiment, resolved specs, seed, input and model info

Directories are written atomically: everything goes to a hidden sibling first and is
renamed into place at the end, so an interrupted or failed run leaves no partial directory.
"""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.store import atomic_write

if TYPE_CHECKING:
    from harness.data import Dataset
    from harness.experiment import Experiment
    from harness.models import WrappedModel
    from harness.runner import RunResult

PACKAGES = ("advharness", "adversarial-robustness-toolbox", "foolbox", "cleverhans", "torch",
            "tensorflow", "keras", "numpy", "pandas", "eagerpy", "scipy")
FILES = ("summary.parquet", "summary.csv", "records.parquet", "manifest.json")


def versions() -> dict[str, str]:
    """Installed versions of the harness, the three libraries and the frameworks."""
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = "not installed"
    return out


def git_commit(directory: str | Path | None = None) -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` of the git checkout the harness runs from (the
    checkout whose top level holds ``directory``, default: this package's parent), or None
    when it is not one (an installed package, no git). Never raises."""
    import subprocess

    root = Path(directory) if directory is not None else Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root.resolve():
            return None  # the package sits inside some other repository
        return {"commit": git("rev-parse", "HEAD"),
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None


def build_manifest(exp: Experiment, ds: Dataset, models: list[WrappedModel]) -> dict[str, Any]:
    return {
        "experiment": exp.model_dump(mode="json"),
        "git": git_commit(),
        "resolved_specs": [a.resolve().to_dict() for a in exp.attacks],
        "seed": exp.seed,
        "data": {"dataset": ds.name, "split": ds.split, "n": len(ds.x), "source": ds.source,
                 "sha256": ds.fingerprint()},
        "models": [{**m.describe(), **getattr(m, "recipe_info", {}),
                    **({"substitute": m.substitute_info} if hasattr(m, "substitute_info") else {})}
                   for m in models],
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
        "manifest.json": lambda p: p.write_text(json.dumps(result.manifest, indent=2,
                                                           default=str)),
    }
    for name, write in writers.items():
        atomic_write(target / name, write)
    return target


def read_adversarials(path: str | Path) -> dict[int, np.ndarray]:
    """The adversarial examples stored in a results directory (``save_adversarials: true``),
    by the summary's ``cell``, each in the attacked model's layout; cells without stored
    adversarials (failed, unsupported, or run without the option) are absent."""
    from harness.store import CellStore

    summary = read_results(path).summary
    store = CellStore(path)
    out = {}
    for cell, key in zip(summary["cell"], summary["cell_key"], strict=True):
        x_adv = store.read_adversarials(str(key))
        if x_adv is not None:
            out[int(cell)] = x_adv
    return out


def read_results(path: str | Path) -> RunResult:
    """Load a results directory written by :func:`write_results`."""
    from harness.runner import RunResult

    p = Path(path)
    missing = [f for f in FILES if not (p / f).is_file()]
    if missing:
        raise HarnessError(f"{p} is not a results directory (missing {', '.join(missing)})")
    return RunResult(
        summary=pd.read_parquet(p / "summary.parquet"),
        records=pd.read_parquet(p / "records.parquet"),
        manifest=json.loads((p / "manifest.json").read_text()),
        path=p,
    )
