"""What a user sees and keeps: a quiet terminal, evidence of failed cells, adversarial
examples, the manifest, file modes, the CLI wrapper, progress, grids in the API, models left
as they were, layout messages."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from harness.store import CellStore, atomic_write

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_result_files_follow_the_umask(tmp_path: Path, umask_022: None) -> None:
    atomic_write(tmp_path / "a.json", lambda p: p.write_text("{}"))
    store = CellStore(tmp_path)
    store.write("k", {"status": "ok"}, pd.DataFrame({"sample": [0]}))
    assert mode(tmp_path / "a.json") == 0o644
    assert {mode(p) for p in store.dir.iterdir()} == {0o644}
    os.umask(0o077)
    atomic_write(tmp_path / "b.json", lambda p: p.write_text("{}"))
    assert mode(tmp_path / "b.json") == 0o600
