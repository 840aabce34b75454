"""Foolbox adapter: support table, every unsupported reason checked against the installed
Foolbox, escape hatch, pass-through and crash handling, chunks, the model form.

Every supported combination runs in tests/test_adapter_contract.py (in bounds and eps,
recorded as Foolbox received it, counted, some sample fooled).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from adapter_contract import N, cases, make_request, make_spec
from conftest import to_layout

from advharness.adapters.base import AttackRequest
from advharness.adapters.foolbox.adapter import FoolboxAdapter
from advharness.core.errors import HarnessError, Unsupported
from advharness.models.base import WrappedModel

ADAPTER = FoolboxAdapter()
EXPECTED_UNSUPPORTED = {
    ("fgsm", "linf", True): "unsupported criterion",
    ("fgm", "l2", True): "unsupported criterion",
    ("deepfool", "l2", True): "only as the stop test",
    ("deepfool", "linf", True): "only as the stop test",
    ("jsma", "l0", False): "foolbox 3.3.4 has no jsma attack",
    ("apgd", "linf", False): "foolbox 3.3.4 has no apgd attack",
}


def test_support_table() -> None:
    supported = {(c.attack, c.norm, c.framework, c.targeted) for c in cases(library="foolbox", whitebox=True)}
    both = ("torch", "tensorflow")
    expected = (
        {("fgsm", "linf", fw, False) for fw in both}
        | {("fgm", "l2", fw, False) for fw in both}
        | {("deepfool", n, fw, False) for n in ("l2", "linf") for fw in both}
        | {
            (a, n, fw, t)
            for a, norms in {
                "bim": ("linf", "l2"),
                "pgd": ("linf", "l2"),
                "mim": ("linf", "l2"),
                "cw": ("l2",),
                "ead": ("l1",),
                "ddn": ("l2",),
                "fmn": ("l0", "l1", "l2", "linf"),
            }.items()
            for n in norms
            for fw in both
            for t in (False, True)
        }
    )
    assert supported == expected
    assert all(not impl.broken for impl in FoolboxAdapter.IMPLS.values())


@pytest.mark.parametrize("case", sorted(EXPECTED_UNSUPPORTED), ids=lambda c: f"{c[0]}-{c[1]}")
def test_unsupported_reason(case: tuple[str, str, bool]) -> None:
    """The reason says why (tests/test_adapter_contract.py checks run refuses with it)."""
    attack, norm, targeted = case
    for fw in ("torch", "tensorflow"):
        reason = ADAPTER.unsupported_reason(attack, norm, fw, targeted)
        assert reason is not None and EXPECTED_UNSUPPORTED[case] in reason


@pytest.mark.parametrize("class_name", ["LinfFastGradientAttack", "L2FastGradientAttack"])
def test_foolbox_fast_gradient_rejects_targeted(
    class_name: str, torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    import foolbox
    import torch

    fmodel = ADAPTER.model_form(torch_model)
    x = torch_model.to_tensor(image_batch[0][:2])
    crit = foolbox.criteria.TargetedMisclassification(torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="unsupported criterion"):
        getattr(foolbox.attacks, class_name)(random_start=False)(fmodel, x, crit, epsilons=0.1)


def test_foolbox_deepfool_ignores_target(
    torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    """With only the top-2 classes as candidates DeepFool can never reach the least-likely
    target: the criterion is a stop test, not a goal."""
    import foolbox
    import torch

    x = image_batch[0][:N]
    target = torch_model.predict_logits(x).argmin(1)
    crit = foolbox.criteria.TargetedMisclassification(torch.from_numpy(target))
    attack = foolbox.attacks.L2DeepFoolAttack(steps=20, candidates=2, overshoot=0.02, loss="logits")
    raw, _, _ = attack(ADAPTER.model_form(torch_model), torch_model.to_tensor(x), crit, epsilons=None)
    pred = torch_model.predict(raw.numpy())
    assert np.all(pred != target) and np.any(pred != torch_model.predict(x))


def test_escape_hatch(torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]) -> None:
    spec = make_spec("pgd", "linf", False, library_options={"foolbox": {"rel_stepsize": 0.5, "steps": 1}})
    out = ADAPTER.run(make_request(torch_model, image_batch, spec))
    assert out.call.kwargs["rel_stepsize"] == 0.5 and out.call.kwargs["steps"] == 1
    assert any("override: steps=1" in n for n in out.call.notes)
    assert torch_model.counter.read().backward == N  # one gradient step, not spec.steps=3
    bad = make_spec("pgd", "linf", False, library_options={"foolbox": {"no_such_kwarg": 1}})
    with pytest.raises(HarnessError, match="no_such_kwarg"):
        ADAPTER.run(make_request(torch_model, image_batch, bad))


def test_cw_zero_images_pass_through(
    torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    """Too few steps: C&W fails and Foolbox returns all-zero images; the adapter keeps them.
    The direct call repeats the adapter's call (same kwargs, model, process): bit-identical."""
    import foolbox
    import torch

    spec = make_spec(
        "cw", "l2", False, steps=2, params={"binary_search_steps": 1, "c": 0.01, "learning_rate": 0.01}
    )
    req = make_request(torch_model, image_batch, spec)
    out = ADAPTER.run(req)
    zero = np.abs(out.x_adv).reshape(N, -1).max(1) == 0
    assert zero.sum() >= N // 2, "expected most samples to fail with 2 steps and c=0.01"
    direct, _, _ = foolbox.attacks.L2CarliniWagnerAttack(**out.call.kwargs)(
        ADAPTER.model_form(torch_model),
        torch_model.to_tensor(req.x),
        foolbox.criteria.Misclassification(torch.from_numpy(req.y)),
        epsilons=None,
    )
    np.testing.assert_array_equal(out.x_adv, direct.numpy())


@pytest.mark.parametrize("fw", ["torch", "tensorflow"])
def test_l0_fmn_overflow_is_real_and_reported(
    fw: str, get_model: Callable[[str], WrappedModel], image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    """A sample that stays non-adversarial until its L0 budget reaches 784 features makes
    L0FMNAttack index past the end (~120 steps with gamma=0.05; gamma=1 doubles it: ~11)."""
    import eagerpy as ep
    import foolbox

    model = get_model(fw)
    fmn: dict[str, Any] = {"steps": 30, "max_stepsize": 1e-8, "min_stepsize": 1e-9, "gamma": 1.0}
    spec = make_spec("fmn", "l0", False, steps=30, params={k: v for k, v in fmn.items() if k != "steps"})
    req = make_request(model, image_batch, spec, rows=2)
    xt = model.to_tensor(req.x)
    labels = ep.from_numpy(ep.astensor(xt), req.y).raw
    attack = foolbox.attacks.L0FMNAttack(**fmn, init_attack=None, binary_search_steps=10)
    with pytest.raises(Exception, match="784") as info:  # IndexError / InvalidArgumentError
        attack(ADAPTER.model_form(model), xt, foolbox.criteria.Misclassification(labels), epsilons=None)
    with pytest.raises(Unsupported, match=f"L0FMNAttack crashed \\({type(info.value).__name__}"):
        ADAPTER.run(req)


def test_l2_fmn_projection_is_a_no_op() -> None:
    """Backs the call-record note: L2FMNAttack.project never shrinks the perturbation."""
    import eagerpy as ep
    import foolbox
    import torch

    attack = foolbox.attacks.L2FMNAttack(
        steps=1, max_stepsize=1.0, min_stepsize=0.01, gamma=0.05, init_attack=None, binary_search_steps=1
    )
    x0 = ep.astensor(torch.zeros(2, 5))
    x = ep.astensor(torch.ones(2, 5))
    projected = attack.project(x, x0, ep.astensor(torch.full((2,), 0.1)))
    assert torch.equal(projected.raw, x.raw)


def test_mim_accumulates_normalised_gradient(
    torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Backs the call-record note: Linf MI-FGSM's momentum buffer receives sign(gradient)."""
    from foolbox.attacks import mi_fgsm

    received: list[np.ndarray] = []
    original = mi_fgsm.GDMOptimizer.__call__

    def record(self: Any, gradient: Any) -> Any:
        received.append(gradient.numpy())
        return original(self, gradient)

    monkeypatch.setattr(mi_fgsm.GDMOptimizer, "__call__", record)
    ADAPTER.run(make_request(torch_model, image_batch, make_spec("mim", "linf", False)))
    assert received and all(set(np.unique(g)) <= {-1.0, 0.0, 1.0} for g in received)


def test_chunks_match_one_batch(
    torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    """Chunks round the gradient differently from one batch; L2 steps are continuous in it,
    so the results agree to ~1e-7 (asserted to 1e-6)."""
    spec = make_spec("bim", "l2", False)
    whole = ADAPTER.run(make_request(torch_model, image_batch, spec))
    chunked = ADAPTER.run(make_request(torch_model, image_batch, spec, batch_size=3))
    np.testing.assert_allclose(chunked.x_adv, whole.x_adv, atol=1e-6)
    assert any("chunk of 3" in n for n in chunked.call.notes)


def test_targeted_without_targets_is_an_error(
    torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    req = make_request(torch_model, image_batch, make_spec("pgd", "linf", True))
    with pytest.raises(HarnessError, match="target"):
        ADAPTER.run(AttackRequest(model=req.model, x=req.x, y=req.y, targets=None, spec=req.spec, seed=0))


@pytest.mark.parametrize("fw", ["torch", "tensorflow"])
def test_model_form_is_cached_and_counted(
    fw: str, get_model: Callable[[str], WrappedModel], image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    import foolbox

    model = get_model(fw)
    fmodel = ADAPTER.model_form(model)
    assert fmodel is ADAPTER.model_form(model) and fmodel.bounds == model.bounds
    assert isinstance(fmodel, {"torch": foolbox.PyTorchModel, "tensorflow": foolbox.TensorFlowModel}[fw])
    fmodel(model.to_tensor(to_layout(image_batch[0][:3], model.layout)))
    assert model.counter.read().forward == 3


def test_import_is_lazy() -> None:
    code = (
        "import sys, advharness.adapters.foolbox.adapter as m; m.FoolboxAdapter().unsupported_reason("
        "'pgd', 'linf', 'torch', False); print('foolbox' in sys.modules, "
        "'eagerpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
