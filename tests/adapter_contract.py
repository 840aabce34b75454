"""The adapter contract table the adapter tests share (not a test module itself).

One spec builder (tiny budgets per attack), one request builder, the table of every
(attack, norm, library, framework, mode) combination split into supported and unsupported
cases, and :func:`check_contract`: what every supported case must satisfy whatever the
library. ``tests/test_adapter_contract.py`` runs the table (with each library's own record
checks from ``tests/adapter_checks.py``); the library modules (``test_adapter_*.py``,
``test_blackbox_*.py``) test what is specific to one library.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pytest
from conftest import to_layout

from advharness.adapters import ADAPTERS
from advharness.adapters.base import Adapter, AttackOutput, AttackRequest, LibraryCall
from advharness.config.catalogue import CATALOGUE, FRAMEWORKS, LIBRARIES, SHORT, Norm
from advharness.config.spec import AttackSpec
from advharness.core.seeding import seed_everything
from advharness.models.base import WrappedModel

#: One instance per library (adapters hold no state).
ADAPTER: dict[str, Adapter] = {name: ADAPTERS[name]() for name in LIBRARIES}
#: Inputs per case: white-box attacks run on a batch of N, black-box ones on a few samples:
#: rows 4-7, where the tiny torch CNN predicts 2, 5, 6, 2, so every row has a reachable
#: target (and CleverHans' HopSkipJump ends on the adversarial side for each of them).
N = 8
BLACKBOX_ROWS = slice(4, 8)
#: Differential evolution over a 784-pixel image is the slowest step: 2 images suffice there.
ROWS_BY_ATTACK = {"threshold": slice(4, 6)}
#: eps of the fixed-budget attacks, per norm.
EPS = {"linf": 0.1, "l2": 1.0}
#: Small but effective settings per attack (eps is added for fixed-budget attacks).
SMALL: dict[str, dict[str, Any]] = {
    "bim": {"steps": 3},
    "pgd": {"steps": 3, "random_start": True},
    "mim": {"steps": 3, "params": {"decay": 0.9}},
    "apgd": {"steps": 3},
    "cw": {"steps": 10, "params": {"binary_search_steps": 2, "learning_rate": 0.1, "c": 10.0}},
    "ead": {"steps": 10, "params": {"binary_search_steps": 2, "learning_rate": 0.1, "c": 10.0}},
    "deepfool": {"steps": 20, "params": {"candidates": 4}},
    "jsma": {"params": {"gamma": 0.1}},
    "ddn": {"steps": 10},
    "fmn": {"steps": 10},
    "square": {"steps": 10},
    "spsa": {"steps": 3, "params": {"samples": 8, "delta": 0.02, "learning_rate": 0.02}},
    "zoo": {"steps": 3, "params": {"coordinates": 16}},
    "threshold": {"steps": 1},
    "pixel": {"steps": 1},
    "simba": {"steps": 20},
    "boundary": {"steps": 5},
    "hsj": {"steps": 2, "params": {"max_evals": 20, "init_evals": 10}},
    "signopt": {"steps": 1, "library_options": {"art": {"num_trial": 10, "query_limit": 300}}},
    "gaussian_blur": {"steps": 20},
    "salt_and_pepper": {"steps": 20},
    "contrast": {"steps": 20},
    "blended_noise": {"steps": 20},
}
#: Where one library needs other settings than :data:`SMALL` (replacing its entry).
LIBRARY_SMALL: dict[tuple[str, str], dict[str, Any]] = {
    # ART's C&W and EAD line-search their learning rate: 3 steps, one constant are enough
    ("art", "cw"): {"steps": 3, "params": {"binary_search_steps": 1, "learning_rate": 0.1, "c": 10.0}},
    ("art", "ead"): {"steps": 3, "params": {"binary_search_steps": 1, "learning_rate": 0.1, "c": 10.0}},
    # ART's DeepFool takes every class's gradient (slow in TF): 3 steps, default candidates
    ("art", "deepfool"): {"steps": 3},
}


def make_spec(
    attack: str,
    norm: str | None = None,
    targeted: bool = False,
    library: str | None = None,
    settings: Mapping[str, dict[str, Any]] | None = None,
    **over: Any,
) -> AttackSpec:
    """``attack`` with its ``settings`` (default: :data:`SMALL`, ``library``'s own where it has
    them), the fixed-budget eps of its norm (default norm: the attack's first), ``over`` on top."""
    norm = norm or CATALOGUE[attack].norms[0]
    if settings is None:
        settings = {**SMALL, **{a: kw for (lib, a), kw in LIBRARY_SMALL.items() if lib == library}}
    kw = dict(settings.get(attack, {}))
    if CATALOGUE[attack].kind == "fixed":
        kw["eps"] = EPS[norm]
    kw.update(over)
    return AttackSpec(attack=attack, norm=cast(Norm, norm), targeted=targeted, **kw)


def reachable_targets(pred: np.ndarray, nb_classes: int) -> np.ndarray:
    """Per row, the prediction of the next row (cyclically) predicted otherwise: a target some
    input of the batch has (attacks that start from an image of the target class need one);
    ``(pred + 1) % nb_classes`` when every row is predicted alike."""
    out = (np.asarray(pred) + 1) % nb_classes
    for i, p in enumerate(pred):
        other = [pred[(i + k) % len(pred)] for k in range(1, len(pred))]
        out[i] = next((o for o in other if o != p), out[i])
    return out.astype(np.int64)


def make_request(
    model: WrappedModel,
    image_batch: tuple[np.ndarray, np.ndarray],
    spec: AttackSpec,
    rows: int | slice = N,
    batch_size: int = 256,
    targets: np.ndarray | None = None,
) -> AttackRequest:
    """A request on a copy of the first ``rows`` images (or that slice), in the model's layout.

    Labels are the model's own predictions (the untrained nets misclassify most true labels,
    and minimum-norm attacks leave misclassified samples unchanged); targets, when the spec is
    targeted and none are given, are :func:`reachable_targets`."""
    x = to_layout(image_batch[0][rows if isinstance(rows, slice) else slice(0, rows)], model.layout).copy()
    pred = model.predict(x).astype(np.int64)
    resolved = spec.resolve()
    if resolved.targeted and targets is None:
        targets = reachable_targets(pred, model.nb_classes)
    return AttackRequest(model, x, pred, targets, resolved, seed=0, batch_size=batch_size)


def lp_norms(d: np.ndarray, norm: str) -> np.ndarray:
    """Per-row size of ``d`` in ``norm`` (linf, l2, l1, l0)."""
    flat = d.reshape(len(d), -1).astype(np.float64)
    out: np.ndarray = {
        "linf": lambda: np.abs(flat).max(1),
        "l2": lambda: np.linalg.norm(flat, axis=1),
        "l1": lambda: np.abs(flat).sum(1),
        "l0": lambda: (flat != 0).sum(1).astype(np.float64),
    }[norm]()
    return out


@dataclass(frozen=True)
class Case:
    """One row of the table: ``attack`` in ``norm`` by ``library`` on ``framework``."""

    attack: str
    norm: str
    library: str
    framework: str
    targeted: bool

    @property
    def id(self) -> str:
        mode = "targeted" if self.targeted else "untargeted"
        return f"{self.attack}-{self.norm}-{self.library}-{SHORT.get(self.framework, self.framework)}-{mode}"

    @property
    def whitebox(self) -> bool:
        return CATALOGUE[self.attack].threat_model == "white-box"

    def reason(self) -> str | None:
        """Why the library cannot run this case (None: it can)."""
        return ADAPTER[self.library].unsupported_reason(self.attack, self.norm, self.framework, self.targeted)


def all_cases() -> list[Case]:
    """Every combination of the catalogue, the libraries, the frameworks and both modes."""
    return [
        Case(attack, norm, library, fw, targeted)
        for attack, d in CATALOGUE.items()
        for norm in d.norms
        for library in LIBRARIES
        for fw in FRAMEWORKS
        for targeted in (False, True)
    ]


def cases(supported: bool = True, library: str | None = None, whitebox: bool | None = None) -> list[Case]:
    """The supported (or unsupported) cases, of one library and/or threat model if given."""
    return [
        c
        for c in all_cases()
        if (c.reason() is None) is supported
        and library in (None, c.library)
        and whitebox in (None, c.whitebox)
    ]


def params(selected: list[Case]) -> list[Any]:
    """``selected`` as pytest params with readable ids (``pgd-linf-art-torch-untargeted``)."""
    return [pytest.param(c, id=c.id) for c in selected]


@dataclass(frozen=True)
class Ran:
    """One case run through its adapter: the request, the output, and what it cost."""

    case: Case
    model: WrappedModel
    request: AttackRequest
    x0: np.ndarray
    out: AttackOutput
    #: The callable the libraries were given under the attack's access (``model.counted``).
    oracle: Any
    forward: int
    backward: int


def run_case(case: Case, model: WrappedModel, image_batch: tuple[np.ndarray, np.ndarray]) -> Ran:
    """Run ``case`` as a cell does: library imported, then seeded, under the attack's access."""
    spec = make_spec(case.attack, case.norm, case.targeted, case.library)
    rows = N if case.whitebox else ROWS_BY_ATTACK.get(case.attack, BLACKBOX_ROWS)
    req = make_request(model, image_batch, spec, rows=rows)
    adapter = ADAPTER[case.library]
    adapter.import_library(case.framework)
    seed_everything(0)
    x0 = req.x.copy()
    model.counter.reset()
    with model.with_access(req.spec.threat_model):
        out = adapter.run(req)
        oracle = model.counted
    counts = model.counter.read()
    return Ran(case, model, req, x0, out, oracle, counts.forward, counts.backward)


#: The module every library's callables live in, per framework.
CALLABLE_PREFIX = {
    ("art", "torch"): "art.attacks.evasion.",
    ("art", "tensorflow"): "art.attacks.evasion.",
    ("foolbox", "torch"): "foolbox.attacks.",
    ("foolbox", "tensorflow"): "foolbox.attacks.",
    ("cleverhans", "torch"): "cleverhans.torch.attacks.",
    ("cleverhans", "tensorflow"): "cleverhans.tf2.attacks.",
}


#: Canonical parameters a library takes in another form (or not at all): the record holds
#: the translated value, or the notes say why the parameter has no counterpart.
#: Workarounds that run a harness subclass of the library's class (recorded by its own name).
SUBCLASSED = {
    ("foolbox", "noise", "linf"): "advharness.adapters.foolbox.noise.",  # draws scaled by max|p|
}

TRANSLATED = {
    ("art", "apgd", "loss"): "loss_type: ce -> cross_entropy, dlr -> difference_logits_ratio",
    ("art", "boundary", "step_adaptation"): "step_adapt = 1 / step_adaptation",
    ("art", "hsj", "gamma"): "ART's HopSkipJump has no gamma",
    ("art", "threshold", "eps"): "th = floor(eps / (hi - lo) * 255) grey levels",
    ("foolbox", "noise", "distribution"): "chooses the Foolbox class (the recorded callable)",
}


def recorded(value: Any, call: LibraryCall) -> bool:
    """Whether ``value`` is one of the call's keyword values (a bool only as a bool)."""
    values = [*call.kwargs.values(), *call.call_kwargs.values()]
    return any(
        isinstance(v, bool | int | float | str)
        and isinstance(v, bool) == isinstance(value, bool)
        and v == value
        for v in values
    )


def check_contract(ran: Ran) -> None:
    """What every adapter guarantees for every supported case."""
    case, model, req, out = ran.case, ran.model, ran.request, ran.out
    x, x_adv, spec = req.x, out.x_adv, req.spec
    # the output: the input's shape, float32, finite, in bounds, in budget; the input untouched
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert np.all(np.isfinite(x_adv))
    lo, hi = model.bounds
    assert x_adv.min() >= lo - 1e-6 and x_adv.max() <= hi + 1e-6
    np.testing.assert_array_equal(x, ran.x0)
    assert not np.shares_memory(x_adv, x)
    if spec.kind == "fixed":
        assert spec.eps is not None
        size = lp_norms(x_adv - x, spec.norm)
        assert np.all(size <= spec.eps * (1 + 1e-5) + 1e-6), size.max()
    # access and counting: white-box cells take gradients, black-box ones only query
    assert spec.threat_model == CATALOGUE[case.attack].threat_model
    assert model.violation is None
    assert ran.forward > 0
    assert (ran.backward > 0) if case.whitebox else (ran.backward == 0)
    # the record: the library's callable, strict JSON, every canonical parameter's value
    call = out.call
    prefix = SUBCLASSED.get(
        (case.library, case.attack, case.norm), CALLABLE_PREFIX[case.library, case.framework]
    )
    assert call.callable.startswith(prefix), call.callable
    assert set(json.loads(call.to_json())) == {"callable", "kwargs", "call_kwargs", "notes"}
    explicit = {"eps": spec.eps, "steps": spec.steps, **spec.params}
    if spec.kind != "fixed":
        del explicit["eps"]
    if CATALOGUE[spec.attack].default_steps is None:
        del explicit["steps"]
    missing = {
        k: v
        for k, v in explicit.items()
        if not recorded(v, call) and (case.library, case.attack, k) not in TRANSLATED
    }
    assert not missing, f"canonical parameters not recorded as passed: {missing}"
