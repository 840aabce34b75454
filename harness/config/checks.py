"""Sanity checks an experiment asks for (``checks:``) and the extra cells they add.

``convergence`` (Carlini et al. 2019, "On Evaluating Adversarial Robustness", arXiv
1902.06705, checklist: iterations and restarts must be sufficient, doubling either must not
raise success): every iterative fixed-budget cell (an attack that takes ``steps``, run at one
``eps``: no search, no transfer source) gets a twin on the first ``convergence_samples``
samples of the batch with 2x ``steps`` and 2x ``restarts`` (where the attack takes restarts
and they differ: PGD with ``random_start``, APGD). The step size stays the base cell's
resolved one (doubling steps must not halve it through the default ``2.5*eps/steps`` rule),
and a query ``budget`` is doubled too, so it does not cap the longer run.
:func:`advharness.analytics.convergence.convergence_changes` pairs each twin with its base
cell and flags a rise in success.
"""

from __future__ import annotations

from typing import Literal

from advharness.config.catalogue import CATALOGUE
from advharness.config.spec import AttackSpec

Check = Literal["convergence"]
CHECKS: tuple[Check, ...] = ("convergence",)
#: The ``check`` column of convergence cells.
CONVERGENCE = "convergence"
#: Default :attr:`Experiment.convergence_samples`: the first this many samples of the batch.
DEFAULT_CONVERGENCE_SAMPLES = 32


def restarts_double(spec: AttackSpec) -> bool:
    """Whether a convergence check doubles ``spec``'s restarts: the attack takes restarts
    and they start at different random points (PGD only with ``random_start``)."""
    d = CATALOGUE[spec.attack]
    if "restarts" not in d.common:
        return False
    return spec.attack != "pgd" or spec.random_start


def converges(spec: AttackSpec) -> bool:
    """Whether a convergence check covers ``spec``: an iterative fixed-budget attack run at
    one eps (no search) on its own model (no transfer source)."""
    d = CATALOGUE[spec.attack]
    return d.kind == "fixed" and "steps" in d.common and spec.search is None and spec.source is None


def convergence_spec(spec: AttackSpec) -> AttackSpec | None:
    """The spec a convergence check runs for ``spec`` (see the module), or None when the
    check does not cover it (:func:`converges`)."""
    if not converges(spec):
        return None
    d = CATALOGUE[spec.attack]
    resolved = spec.resolve()
    assert resolved.steps is not None  # an attack with steps has default_steps
    update: dict[str, int | float] = {"steps": 2 * resolved.steps}
    if restarts_double(spec):
        update["restarts"] = 2 * resolved.restarts
    if "step_size" in d.common and resolved.step_size is not None:
        update["step_size"] = resolved.step_size
    if spec.budget is not None:
        update["budget"] = 2 * spec.budget
    return AttackSpec.model_validate({**spec.model_dump(), **update})
