"""The cell store: durable writes, and unreadable stored cells run again instead of blocking
resume."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd
import pytest

from advharness.core.errors import HarnessError
from advharness.reporting.store import CellStore

SUMMARY = {"status": "ok", "reason": "", "robust_accuracy": 0.5}
RECORDS = pd.DataFrame({"sample": range(4), "success": [True, False, True, False]})


def _spoil(path: Path, how: str) -> None:
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # garbage
        path.write_bytes(b"\x00\xff{not json")


@pytest.mark.parametrize(
    ("which", "how"),
    [
        ("json", "empty"),
        ("json", "truncated"),
        ("json", "garbage"),
        ("parquet", "empty"),
        ("parquet", "truncated"),
    ],
)
def test_unreadable_cell_counts_as_not_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, which: str, how: str
) -> None:
    store = CellStore(tmp_path)
    store.write("k", SUMMARY, RECORDS)
    assert store.status("k") == "ok" and store.done("k")
    path = store.dir / f"k.{which}"
    _spoil(path, how)
    with caplog.at_level(logging.WARNING, logger="advharness.reporting.store"):
        assert store.status("k") is None and not store.done("k")
    assert str(path) in caplog.text and "will run again" in caplog.text
    with pytest.raises(HarnessError) as e:
        store.read("k")
    assert "\n" not in str(e.value) and f"stored cell file {path} is unreadable" in str(e.value)
    store.write("k", SUMMARY, RECORDS)  # the re-run cell replaces it
    summary, records = store.read("k")
    assert summary == SUMMARY and records is not None and records.equals(RECORDS)


def test_cell_files_and_their_directory_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    store = CellStore(tmp_path)
    store.write("k", SUMMARY, RECORDS)
    cells = str(store.dir)
    tmp_files = [Path(p) for p in synced if p != cells]
    assert synced.count(cells) == 2  # after each rename
    assert sorted(p.suffix for p in tmp_files) == [".json", ".parquet"]
    assert all(p.parent == store.dir and p.name.startswith(".tmp-") for p in tmp_files)
    assert synced.index(cells) > 0  # the file before its rename


def test_resume_reruns_corrupt_cells_to_the_same_table(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from advharness.config.experiment import parse_experiment
    from advharness.execution.orchestrate import run_experiment

    exp = parse_experiment(
        {
            "name": "spoilt",
            "seed": 1,
            "data": {"dataset": "digits", "n_samples": 6},
            "libraries": ["art", "foolbox", "cleverhans"],
            "models": [{"recipe": "digits_mlp", "framework": "torch"}],
            "attacks": [{"attack": "fgsm", "eps": 0.1}],
        }
    )
    first = run_experiment(exp, out_dir=tmp_path, backend="inline")
    keys = first.summary["cell_key"].tolist()
    cells = tmp_path / "cells"
    _spoil(cells / f"{keys[0]}.json", "empty")
    _spoil(cells / f"{keys[1]}.parquet", "truncated")
    with caplog.at_level(logging.WARNING, logger="advharness.reporting.store"):
        again = run_experiment(exp, out_dir=tmp_path, backend="inline")
    assert again.manifest["cells_run_now"] == 2
    assert f"{keys[0]}.json" in caplog.text and f"{keys[1]}.parquet" in caplog.text
    volatile = ["time_s", "worker_pid", "worker_rss_mb"]
    pd.testing.assert_frame_equal(
        first.summary.drop(columns=volatile, errors="ignore"),
        again.summary.drop(columns=volatile, errors="ignore"),
    )
    pd.testing.assert_frame_equal(first.records, again.records)
