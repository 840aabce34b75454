"""Foolbox decision-based attacks: every supported combination runs through the one-hot
oracle without a gradient, stays in bounds, is recorded explicitly and counted; every
unsupported reason is checked."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest
from conftest import spy_constructor, to_layout

from advharness.adapters.base import AttackRequest
from advharness.adapters.foolbox.adapter import FoolboxAdapter
from advharness.adapters.foolbox.blackbox import BLACKBOX_IMPLS, CLASSES
from advharness.config.catalogue import Norm
from advharness.config.spec import AttackSpec
from advharness.core.errors import Unsupported
from advharness.models.base import WrappedModel

N = 4
ADAPTER = FoolboxAdapter()
SPEC_ARGS: dict[str, dict[str, Any]] = {
    "boundary": {"steps": 5},
    "hsj": {"steps": 2, "params": {"init_evals": 10, "max_evals": 20}},
    "gaussian_blur": {"steps": 20},
    "salt_and_pepper": {"steps": 20},
    "contrast": {"steps": 20},
    "blended_noise": {"steps": 20},
}
COMBOS = [
    (attack, norm, fw, targeted)
    for attack, impl in BLACKBOX_IMPLS.items()
    for norm in impl.norms
    for fw in impl.frameworks
    for targeted in (False, True)
    if ADAPTER.unsupported_reason(attack, norm, fw, targeted) is None
]
EXPECTED_UNSUPPORTED = {
    ("boundary", "l2"): "starting point of the target class",
    ("hsj", "l2"): "starting point of the target class",
    ("hsj", "linf"): "starting point of the target class",
    ("gaussian_blur", "linf"): "only the stop test",
    ("salt_and_pepper", "l2"): "only the stop test",
    ("contrast", "l2"): "only the stop test",
    ("blended_noise", "l2"): "only the stop test",
}


def _id(combo: tuple[str, str, str, bool]) -> str:
    attack, norm, fw, targeted = combo
    return f"{attack}-{norm}-{fw}-{'targeted' if targeted else 'untargeted'}"


def _seed(seed: int = 0) -> None:
    import tensorflow as tf
    import torch

    torch.manual_seed(seed)
    tf.random.set_seed(seed)


def _request(model: WrappedModel, x_nchw: np.ndarray, spec: AttackSpec) -> AttackRequest:
    """Labels are the model's own predictions (the untrained nets misclassify most images)."""
    x = to_layout(x_nchw[:N], model.layout)
    return AttackRequest(model=model, x=x, y=model.predict(x), targets=None, spec=spec.resolve(), seed=0)


@pytest.mark.parametrize("combo", COMBOS, ids=[_id(c) for c in COMBOS])
def test_supported_combination(
    combo: tuple[str, Norm, str, bool],
    request: pytest.FixtureRequest,
    image_batch: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attack, norm, fw, targeted = combo
    model = request.getfixturevalue({"torch": "torch_model", "tensorflow": "tf_model"}[fw])
    spec = AttackSpec(attack=attack, norm=norm, targeted=targeted, **SPEC_ARGS[attack])
    req = _request(model, image_batch[0], spec)
    assert req.spec.threat_model == "decision-based"
    class_name = CLASSES[attack]
    seen = _spy_fb(monkeypatch, class_name)
    _seed()
    with model.with_access(req.spec.threat_model):
        out = ADAPTER.run(req)

    assert model.violation is None
    assert out.x_adv.shape == req.x.shape and out.x_adv.dtype == np.float32
    lo, hi = model.bounds
    assert out.x_adv.min() >= lo - 1e-6 and out.x_adv.max() <= hi + 1e-6
    counts = model.counter.read()
    assert counts.forward > 0 and counts.backward == 0

    call = out.call
    assert call.callable == f"foolbox.attacks.{class_name}"
    assert call.kwargs == seen
    import foolbox.attacks as fa

    params = set(inspect.signature(getattr(fa, class_name).__mro__[1]).parameters)
    assert not params - set(seen), f"relies on Foolbox defaults for {params - set(seen)}"
    if "init_attack" in seen:  # the nested init attack is explicit too
        init = seen["init_attack"]
        init_params = set(inspect.signature(type(init)).parameters)
        assert init_params == set(vars(init)) - {"_distance"} | {"distance"}
        assert any("init_attack=LinearSearchBlendedUniformNoiseAttack(" in n for n in call.notes)
    assert call.call_kwargs == {"epsilons": None, "criterion": "Misclassification(labels)"}
    assert call.to_json()


def test_decision_attacks_find_adversarials(
    torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    """Boundary starts adversarial (the init attack must succeed) and stays so."""
    req = _request(torch_model, image_batch[0], AttackSpec(attack="boundary", steps=5))
    _seed()
    with torch_model.with_access("decision-based"):
        out = ADAPTER.run(req)
    assert np.all(torch_model.predict(out.x_adv) != req.y)


def test_support_table() -> None:
    supported = {(a, n, fw) for a, n, fw, t in COMBOS}
    assert all(not t for *_, t in COMBOS)
    assert supported == {
        (a, n, fw)
        for a, norms in {
            "boundary": ("l2",),
            "hsj": ("l2", "linf"),
            "gaussian_blur": ("linf",),
            "salt_and_pepper": ("l2",),
            "contrast": ("l2",),
            "blended_noise": ("l2",),
        }.items()
        for n in norms
        for fw in ("torch", "tensorflow")
    }


@pytest.mark.parametrize("case", sorted(EXPECTED_UNSUPPORTED), ids=lambda c: f"{c[0]}-{c[1]}")
def test_unsupported_targeted(
    case: tuple[str, Norm], torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    attack, norm = case
    for fw in ("torch", "tensorflow"):
        reason = ADAPTER.unsupported_reason(attack, norm, fw, True)
        assert reason is not None and EXPECTED_UNSUPPORTED[case] in reason
    spec = AttackSpec(attack=attack, norm=norm, targeted=True).resolve()
    req = AttackRequest(
        model=torch_model,
        x=image_batch[0][:2],
        y=image_batch[1][:2],
        targets=np.zeros(2, np.int64),
        spec=spec,
        seed=0,
    )
    with pytest.raises(Unsupported):
        ADAPTER.run(req)
    assert torch_model.counter.read().forward == 0


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
    _seed()
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
        out = ADAPTER.run(_request(torch_model, image_batch[0], spec))
    assert out.call.kwargs["target"] == 0.0
    assert any("override: target=0.0" in n for n in out.call.notes)


def _spy_fb(monkeypatch: pytest.MonkeyPatch, class_name: str) -> dict[str, Any]:
    import foolbox.attacks as fa

    return spy_constructor(monkeypatch, fa, class_name)
