"""Core helpers: one-line exception text, package versions, seeding."""

from __future__ import annotations

from typing import Any

import pytest

from advharness.core.errors import first_line, one_line


def test_one_line_is_the_type_and_the_first_non_empty_line() -> None:
    assert one_line(RuntimeError("\n  boom  \nsecond line")) == "RuntimeError: boom"
    assert one_line(KeyError()) == "KeyError"
    assert one_line(ValueError("x" * 400)) == "ValueError: " + "x" * 300
    assert one_line(ValueError("x" * 400), 500) == "ValueError: " + "x" * 400
    assert first_line("\n\n") == ""


def test_package_version_is_the_installed_one_else_the_documented_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import numpy as np

    import advharness
    from advharness.adapters.base import Adapter
    from advharness.core.versions import NOT_INSTALLED, package_version
    from advharness.reporting import results

    assert package_version("numpy") == np.__version__
    assert package_version("advharness") == advharness.__version__  # pyproject and __init__ agree
    assert package_version("advh-no-such-distribution") == NOT_INSTALLED == "not installed"

    class Missing(Adapter):
        name, package, IMPLS = "missing", "advh-no-such-distribution", {}

        def convert(self, model: Any) -> Any:
            return model

    assert Missing().version_hint() == "not installed"
    monkeypatch.setattr(results, "PACKAGES", ("numpy", "advh-no-such-distribution"))
    versions = results.versions()
    assert versions["numpy"] == np.__version__ and versions["advh-no-such-distribution"] == "not installed"


def test_deterministic_seeds_every_generator_and_restores_what_it_changed() -> None:
    import random

    import numpy as np
    import torch

    from advharness.core.seeding import deterministic

    flags = torch.are_deterministic_algorithms_enabled()
    np.random.seed(1)
    expected_next = np.random.get_state()
    draws = []
    for _ in range(2):
        with deterministic("torch", 7, restore_generators=True):
            assert torch.are_deterministic_algorithms_enabled()
            draws.append((random.random(), float(np.random.rand()), torch.rand(1).item()))
    assert draws[0] == draws[1]
    assert torch.are_deterministic_algorithms_enabled() == flags
    after = float(np.random.rand())
    np.random.set_state(expected_next)
    assert after == float(np.random.rand())  # the caller's stream continues where it was
    with deterministic("torch", 7):  # without restore_generators they stay seeded
        pass
    assert (random.random(), float(np.random.rand()), torch.rand(1).item()) == draws[0]
    with pytest.raises(ValueError, match="unknown framework 'jax'"), deterministic("jax", 0):
        pass


def test_an_exception_ending_an_attack_is_described_in_one_line() -> None:
    from advharness.core.interrupts import describe

    assert describe(SystemExit(4)) == "SystemExit(4) (sys.exit called inside the attack)"
    multi = describe(RuntimeError("boom\nmore"))
    assert multi == "RuntimeError: boom raised inside the attack (not a Ctrl-C)"
