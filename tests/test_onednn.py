"""The numerics-sensitive tests (marker ``numerics``) again, under the other oneDNN setting.

oneDNN changes TensorFlow's float kernels (blocking, fused ops, AVX-512 paths), so a test
whose verdict rides on the last bit passes under one setting and fails under the other on
some CPU. TensorFlow reads ``TF_ENABLE_ONEDNN_OPTS`` once, at import: the suite runs under
the setting conftest states, and this test runs ``pytest -m numerics`` in a fresh interpreter
under the opposite one, so both settings are tested on every machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest


def test_numerics_tests_pass_under_the_other_onednn_setting(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    here = os.environ["TF_ENABLE_ONEDNN_OPTS"]
    assert here in ("0", "1"), f"TF_ENABLE_ONEDNN_OPTS must be 0 or 1 for this suite, not {here!r}"
    other = "0" if here == "1" else "1"
    junit = tmp_path / "numerics.xml"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "numerics",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
            "-o",
            "junit_family=xunit2",
        ],
        cwd=request.config.rootpath,
        env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": other},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    log = out.stdout[-4000:] + out.stderr[-2000:]
    assert out.returncode == 0, log
    assert f"\nTF_ENABLE_ONEDNN_OPTS={other}\n" in out.stdout, log  # conftest's header line
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    counts = {k: int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")}
    assert counts["tests"] >= 1 and counts["failures"] == counts["errors"] == 0, counts
    assert counts["skipped"] == 0, counts
    ran = {(c.get("classname", "").rsplit(".", 1)[-1], c.get("name")) for c in suite.iter("testcase")}
    # every numerics test this session collected ran there too (the session may be a subset)
    mine = {
        (Path(item.path).stem, item.name)
        for item in request.session.items
        if item.get_closest_marker("numerics")
    }
    assert mine <= ran, sorted(mine - ran)
