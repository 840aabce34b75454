"""The adapter contract over the whole table (``tests/adapter_contract.py``).

Every supported (attack, norm, library, framework, mode) runs under its threat model and
keeps the contract (:func:`check_contract`), records its library call completely and moves
the inputs the attack's way (each library's checks: ``tests/adapter_checks.py``). Every
unsupported combination is refused with the adapter's reason before the model is touched,
and a cell turns it into an ``unsupported`` row, not an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from adapter_checks import EFFECTS, RECORDS, SPIES
from adapter_contract import (
    ADAPTER,
    Case,
    all_cases,
    cases,
    check_contract,
    make_spec,
    params,
    reachable_targets,
    run_case,
)
from conftest import tiny_tf_model, tiny_torch_model, to_layout

from advharness.adapters.base import AttackRequest
from advharness.cells.cell import CellInputs
from advharness.cells.dispatch import run_cell
from advharness.core.errors import Unsupported
from advharness.models.base import WrappedModel


@pytest.mark.parametrize("case", params(cases()))
def test_supported_case(
    case: Case,
    get_model: Callable[[str], WrappedModel],
    image_batch: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    model = get_model(case.framework)
    seen = SPIES[case.library](case, monkeypatch)
    ran = run_case(case, model, image_batch)
    check_contract(ran)
    RECORDS[case.library](ran, seen)
    EFFECTS[case.library](ran)
    if case.framework == "torch":  # the network is left as the wrapper set it up
        module = model.module  # type: ignore[attr-defined]
        assert not module.training and not model.counted.training
        assert all(p.grad is None and not p.requires_grad for p in module.parameters())
    if case.library == "art" and case.whitebox:  # quiet: no progress bars, no TF warnings
        assert "%|" not in capfd.readouterr().err, "tqdm bar printed"
        loud = [r for r in caplog.records if r.name.split(".")[0] in ("art", "tensorflow")]
        assert not loud, [r.getMessage()[:80] for r in loud]


@pytest.fixture(scope="module")
def models() -> dict[str, WrappedModel]:
    """One tiny model per framework: unsupported cases must not touch them."""
    return {"torch": tiny_torch_model(), "tensorflow": tiny_tf_model()}


class _FrameworkOnly:
    """A model with nothing but its framework: refusing a case must need nothing else."""

    def __init__(self, framework: str) -> None:
        self.framework = framework


@pytest.mark.parametrize("case", params(cases(supported=False)))
def test_unsupported_case_is_a_row_with_its_reason(
    case: Case, models: dict[str, WrappedModel], image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    adapter, model = ADAPTER[case.library], models[case.framework]
    reason = case.reason()
    assert reason and reason.startswith(f"{case.library} ")
    spec = make_spec(case.attack, case.norm, case.targeted, case.library).resolve()
    x = to_layout(image_batch[0][:2], model.layout)
    pred = model.predict(x)
    targets = reachable_targets(pred, model.nb_classes) if case.targeted else None
    stub: Any = _FrameworkOnly(case.framework)
    with pytest.raises(Unsupported) as info:
        adapter.run(AttackRequest(stub, x, pred, targets, spec, seed=0))
    assert info.value.reason == reason
    row = run_cell(CellInputs(model, x, pred, pred, targets), spec, case.library, seed=0, batch_size=8)
    assert (row.summary["status"], row.summary["reason"]) == ("unsupported", reason)
    assert row.records is None and row.x_adv is None
    counts = model.counter.read()
    assert (counts.forward, counts.backward) == (0, 0), "refused before the library ran"


def test_the_table_covers_every_combination_once() -> None:
    everything = all_cases()
    ids = [c.id for c in everything]
    assert len(set(ids)) == len(ids)
    assert sorted(c.id for c in cases() + cases(supported=False)) == sorted(ids)
    supported = cases()
    for lib in ADAPTER:  # every library runs something white-box and black-box in each framework
        for fw in ("torch", "tensorflow"):
            assert {c.whitebox for c in supported if (c.library, c.framework) == (lib, fw)} >= {True}
        assert any(not c.whitebox for c in supported if c.library == lib)
