"""Foolbox decision-based attacks: support table, unsupported reasons, the init attack, the
oracle refusing gradients, the escape hatch. Every supported combination runs through the
one-hot oracle in tests/test_adapter_contract.py (no gradient, in bounds, recorded, counted)."""

from __future__ import annotations

import numpy as np
import pytest
from adapter_contract import cases, make_request

from advharness.adapters.foolbox.adapter import FoolboxAdapter
from advharness.config.spec import AttackSpec
from advharness.core.seeding import seed_everything
from advharness.models.base import WrappedModel

N = 4
ADAPTER = FoolboxAdapter()
EXPECTED_UNSUPPORTED = {
    ("boundary", "l2"): "starting point of the target class",
    ("hsj", "l2"): "starting point of the target class",
    ("hsj", "linf"): "starting point of the target class",
    ("gaussian_blur", "linf"): "only the stop test",
    ("salt_and_pepper", "l2"): "only the stop test",
    ("contrast", "l2"): "only the stop test",
    ("blended_noise", "l2"): "only the stop test",
}


def test_decision_attacks_find_adversarials(
    torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    """Boundary starts adversarial (the init attack must succeed) and stays so."""
    req = make_request(torch_model, image_batch, AttackSpec(attack="boundary", steps=5), rows=N)
    seed_everything(0)
    with torch_model.with_access("decision-based"):
        out = ADAPTER.run(req)
    assert np.all(torch_model.predict(out.x_adv) != req.y)


def test_support_table() -> None:
    combos = cases(library="foolbox", whitebox=False)
    supported = {(c.attack, c.norm, c.framework) for c in combos}
    assert not any(c.targeted for c in combos if c.attack != "noise")  # noise: any criterion
    assert {c.targeted for c in combos if c.attack == "noise"} == {False, True}
    assert supported == {
        (a, n, fw)
        for a, norms in {
            "boundary": ("l2",),
            "hsj": ("l2", "linf"),
            "gaussian_blur": ("linf",),
            "salt_and_pepper": ("l2",),
            "contrast": ("l2",),
            "blended_noise": ("l2",),
            "noise": ("linf", "l2"),
        }.items()
        for n in norms
        for fw in ("torch", "tensorflow")
    }


@pytest.mark.parametrize("case", sorted(EXPECTED_UNSUPPORTED), ids=lambda c: f"{c[0]}-{c[1]}")
def test_unsupported_targeted(case: tuple[str, str]) -> None:
    """The reason says why (tests/test_adapter_contract.py checks run refuses with it)."""
    attack, norm = case
    for fw in ("torch", "tensorflow"):
        reason = ADAPTER.unsupported_reason(attack, norm, fw, True)
        assert reason is not None and EXPECTED_UNSUPPORTED[case] in reason


def test_targeted_boundary_init_fails_in_foolbox(
    torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    """Backs NO_TARGETED_INIT: uniform noise rarely hits every target, and Foolbox then raises."""
    import foolbox
    import torch

    x = image_batch[0][:N]
    target = torch_model.predict_logits(x).argmin(1)
    init = foolbox.attacks.LinearSearchBlendedUniformNoiseAttack(
        distance=foolbox.distances.l2, directions=5, steps=5
    )
    attack = foolbox.attacks.BoundaryAttack(init_attack=init, steps=1)
    seed_everything(0)
    with torch_model.with_access("decision-based"), pytest.warns(UserWarning):
        with pytest.raises(ValueError, match="init_attack failed"):
            attack(
                ADAPTER.model_form(torch_model),
                torch_model.to_tensor(x),
                foolbox.criteria.TargetedMisclassification(torch.from_numpy(target)),
                epsilons=None,
            )


def test_gradient_request_is_a_violation(
    torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    """A Foolbox gradient call on the oracle surfaces as a violation, not a silent zero."""
    import eagerpy as ep
    import foolbox

    from advharness.models.base import ThreatModelViolation

    x = image_batch[0][:2]
    with torch_model.with_access("decision-based"):
        fmodel = ADAPTER.model_form(torch_model)
        xt = ep.astensor(torch_model.to_tensor(x))
        with pytest.raises(ThreatModelViolation):
            ep.value_and_grad(lambda z: fmodel(z).sum(), xt)
    assert torch_model.violation is not None
    assert isinstance(fmodel, foolbox.PyTorchModel)


def test_escape_hatch(torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]) -> None:
    spec = AttackSpec(attack="contrast", steps=20, library_options={"foolbox": {"target": 0.0}})
    with torch_model.with_access("decision-based"):
        out = ADAPTER.run(make_request(torch_model, image_batch, spec, rows=N))
    assert out.call.kwargs["target"] == 0.0
    assert any("override: target=0.0" in n for n in out.call.notes)
