"""Foolbox adapter: every supported combination runs, stays in bounds and eps, is recorded and
counted; every unsupported reason is checked against the installed Foolbox."""

from __future__ import annotations

import inspect
import subprocess
import sys
from typing import Any, cast

import numpy as np
import pytest
from conftest import spy_constructor, to_layout

from advharness.adapters.base import AttackOutput, AttackRequest
from advharness.adapters.foolbox.adapter import FoolboxAdapter
from advharness.adapters.foolbox.whitebox import CLASSES
from advharness.config.catalogue import CATALOGUE, Norm
from advharness.config.spec import AttackSpec
from advharness.core.errors import HarnessError, Unsupported
from advharness.models.base import WrappedModel

N = 8
EPS = {"linf": 0.1, "l2": 1.0}
#: Small but effective settings per attack (eps is added for fixed-budget attacks).
SPEC_ARGS: dict[str, dict[str, Any]] = {
    "fgsm": {},
    "fgm": {},
    "bim": {"steps": 3},
    "pgd": {"steps": 3, "random_start": True},
    "mim": {"steps": 3},
    "ddn": {"steps": 10},
    "cw": {"steps": 10, "params": {"binary_search_steps": 2, "c": 10.0, "learning_rate": 0.1}},
    "ead": {"steps": 10, "params": {"binary_search_steps": 2, "c": 10.0, "learning_rate": 0.1}},
    "deepfool": {"steps": 20, "params": {"candidates": 4}},
    "fmn": {"steps": 10},
}
ADAPTER = FoolboxAdapter()
COMBOS = [
    (attack, norm, fw, targeted)
    for attack, impl in FoolboxAdapter.IMPLS.items()
    for norm in impl.norms
    for fw in impl.frameworks
    for targeted in (False, True)
    if ADAPTER.unsupported_reason(attack, norm, fw, targeted) is None
    and CATALOGUE[attack].threat_model == "white-box"  # black-box: tests/test_blackbox_foolbox.py
]
EXPECTED_UNSUPPORTED = {
    ("fgsm", "linf", True): "unsupported criterion",
    ("fgm", "l2", True): "unsupported criterion",
    ("deepfool", "l2", True): "only as the stop test",
    ("deepfool", "linf", True): "only as the stop test",
    ("jsma", "l0", False): "foolbox 3.3.4 has no jsma attack",
    ("apgd", "linf", False): "foolbox 3.3.4 has no apgd attack",
}


def _id(combo: tuple[str, str, str, bool]) -> str:
    attack, norm, fw, targeted = combo
    return f"{attack}-{norm}-{fw}-{'targeted' if targeted else 'untargeted'}"


def _seed(seed: int = 0) -> None:
    import tensorflow as tf
    import torch

    torch.manual_seed(seed)
    tf.random.set_seed(seed)


def _model(request: pytest.FixtureRequest, fw: str) -> WrappedModel:
    return cast(WrappedModel, request.getfixturevalue({"torch": "torch_model", "tensorflow": "tf_model"}[fw]))


def _request(
    model: WrappedModel, x_nchw: np.ndarray, spec: AttackSpec, batch_size: int = 256
) -> AttackRequest:
    """Labels are the model's own predictions: the untrained nets misclassify ~90 % of the
    true labels, and minimum-norm attacks leave already-misclassified samples unchanged."""
    x = to_layout(x_nchw[:N], model.layout)
    y = model.predict(x)
    resolved = spec.resolve()
    targets = (y + 1 + np.arange(len(y)) % 9) % model.nb_classes if resolved.targeted else None
    return AttackRequest(model=model, x=x, y=y, targets=targets, spec=resolved, seed=0, batch_size=batch_size)


def _spec(attack: str, norm: Norm, targeted: bool, **over: Any) -> AttackSpec:
    args = dict(SPEC_ARGS[attack])
    args.update(over)
    from advharness.config.catalogue import CATALOGUE

    if CATALOGUE[attack].kind == "fixed":
        args.setdefault("eps", EPS[norm])
    return AttackSpec(attack=attack, norm=norm, targeted=targeted, **args)


def _attacks() -> Any:
    import foolbox.attacks

    return foolbox.attacks


def _norms(d: np.ndarray, norm: str) -> np.ndarray:
    flat = d.reshape(len(d), -1)
    return cast(
        np.ndarray,
        {
            "linf": np.abs(flat).max(1),
            "l2": np.linalg.norm(flat, axis=1),
            "l1": np.abs(flat).sum(1),
            "l0": (flat != 0).sum(1),
        }[norm],
    )


@pytest.mark.parametrize("combo", COMBOS, ids=[_id(c) for c in COMBOS])
def test_supported_combination(
    combo: tuple[str, Norm, str, bool],
    request: pytest.FixtureRequest,
    image_batch: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attack, norm, fw, targeted = combo
    model = _model(request, fw)
    req = _request(model, image_batch[0], _spec(attack, norm, targeted))
    class_name = CLASSES[attack][norm]
    init_params = set(inspect.signature(getattr(_attacks(), class_name)).parameters)
    seen = _spy_fb(monkeypatch, class_name)
    _seed()
    out: AttackOutput = ADAPTER.run(req)
    x, x_adv, spec = req.x, out.x_adv, req.spec

    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    lo, hi = model.bounds
    assert x_adv.min() >= lo - 1e-6 and x_adv.max() <= hi + 1e-6
    if spec.kind == "fixed":
        assert spec.eps is not None
        assert np.all(_norms(x_adv - x, norm) <= spec.eps * (1 + 1e-5) + 1e-6)
    assert np.any(np.abs(x_adv - x).reshape(N, -1).max(1) > 0), "no sample changed"
    goal = model.predict(x_adv)
    fooled = goal == req.targets if targeted else goal != req.y
    assert fooled.any(), "no sample fooled"

    call = out.call
    assert call.callable == f"foolbox.attacks.{class_name}"
    assert call.kwargs == seen  # every constructor kwarg passed is recorded
    defaulted = init_params - {"rel_stepsize"} - set(seen)  # rel_ is overridden by abs_stepsize
    assert not defaulted, f"relies on Foolbox defaults for {defaulted}"
    assert call.call_kwargs == {
        "epsilons": spec.eps if spec.kind == "fixed" else None,
        "criterion": "TargetedMisclassification(targets)" if targeted else "Misclassification(labels)",
    }
    assert call.to_json()
    counts = model.counter.read()
    assert counts.forward > 0 and counts.backward > 0


def test_support_table() -> None:
    supported = {(a, n, fw, t) for a, n, fw, t in COMBOS}
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
def test_unsupported_reason_and_run(
    case: tuple[str, Norm, bool], torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    attack, norm, targeted = case
    for fw in ("torch", "tensorflow"):
        reason = ADAPTER.unsupported_reason(attack, norm, fw, targeted)
        assert reason is not None and EXPECTED_UNSUPPORTED[case] in reason
    spec = AttackSpec(
        attack=attack, norm=norm, targeted=targeted, eps=0.1 if attack in ("fgsm", "fgm", "apgd") else None
    )
    req = AttackRequest(
        model=torch_model,
        x=image_batch[0][:2],
        y=image_batch[1][:2],
        targets=np.zeros(2, np.int64) if targeted else None,
        spec=spec.resolve(),
        seed=0,
    )
    with pytest.raises(Unsupported) as info:
        ADAPTER.run(req)
    assert info.value.reason == ADAPTER.unsupported_reason(attack, norm, "torch", targeted)
    assert torch_model.counter.read().forward == 0


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
    spec = _spec("pgd", "linf", False, library_options={"foolbox": {"rel_stepsize": 0.5, "steps": 1}})
    out = ADAPTER.run(_request(torch_model, image_batch[0], spec))
    assert out.call.kwargs["rel_stepsize"] == 0.5 and out.call.kwargs["steps"] == 1
    assert any("override: steps=1" in n for n in out.call.notes)
    assert torch_model.counter.read().backward == N  # one gradient step, not spec.steps=3
    bad = _spec("pgd", "linf", False, library_options={"foolbox": {"no_such_kwarg": 1}})
    with pytest.raises(HarnessError, match="no_such_kwarg"):
        ADAPTER.run(_request(torch_model, image_batch[0], bad))


def test_cw_zero_images_pass_through(
    torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    """Too few steps: C&W fails and Foolbox returns all-zero images; the adapter keeps them.
    The direct call repeats the adapter's call (same kwargs, model, process): bit-identical."""
    import foolbox
    import torch

    spec = _spec(
        "cw", "l2", False, steps=2, params={"binary_search_steps": 1, "c": 0.01, "learning_rate": 0.01}
    )
    req = _request(torch_model, image_batch[0], spec)
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
    fw: str, request: pytest.FixtureRequest, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    """A sample that stays non-adversarial until its L0 budget reaches 784 features makes
    L0FMNAttack index past the end (~120 steps with gamma=0.05; gamma=1 doubles it: ~11)."""
    import eagerpy as ep
    import foolbox

    model = _model(request, fw)
    fmn: dict[str, Any] = {"steps": 30, "max_stepsize": 1e-8, "min_stepsize": 1e-9, "gamma": 1.0}
    spec = _spec("fmn", "l0", False, steps=30, params={k: v for k, v in fmn.items() if k != "steps"})
    req = _request(model, image_batch[0][:2], spec)
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
    ADAPTER.run(_request(torch_model, image_batch[0], _spec("mim", "linf", False)))
    assert received and all(set(np.unique(g)) <= {-1.0, 0.0, 1.0} for g in received)


def test_chunks_match_one_batch(
    torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    """Chunks round the gradient differently from one batch; L2 steps are continuous in it,
    so the results agree to ~1e-7 (asserted to 1e-6)."""
    spec = _spec("bim", "l2", False)
    whole = ADAPTER.run(_request(torch_model, image_batch[0], spec))
    chunked = ADAPTER.run(_request(torch_model, image_batch[0], spec, batch_size=3))
    np.testing.assert_allclose(chunked.x_adv, whole.x_adv, atol=1e-6)
    assert any("chunk of 3" in n for n in chunked.call.notes)


def test_targeted_without_targets_is_an_error(
    torch_model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    req = _request(torch_model, image_batch[0], _spec("pgd", "linf", True))
    with pytest.raises(HarnessError, match="target"):
        ADAPTER.run(AttackRequest(model=req.model, x=req.x, y=req.y, targets=None, spec=req.spec, seed=0))


@pytest.mark.parametrize("fw", ["torch", "tensorflow"])
def test_model_form_is_cached_and_counted(
    fw: str, request: pytest.FixtureRequest, image_batch: tuple[np.ndarray, np.ndarray]
) -> None:
    import foolbox

    model = _model(request, fw)
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


def _spy_fb(monkeypatch: pytest.MonkeyPatch, class_name: str) -> dict[str, Any]:
    import foolbox.attacks as fa

    return spy_constructor(monkeypatch, fa, class_name)
