"""The one contract every library adapter implements.

Given a wrapped model, inputs, labels (or targets) and a resolved canonical spec, an adapter
returns adversarial inputs as a float32 NumPy array in the caller's layout, plus a record of
the exact library call it made. Nothing else: no metrics, no I/O.

Support is declared in a table of :class:`Impl` entries, so ``advharness list`` can print the
matrix without importing any library.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from advharness.config.spec import ResolvedSpec
from advharness.core.errors import Unsupported
from advharness.core.versions import package_version
from advharness.models.base import WrappedModel


@dataclass(frozen=True)
class AttackRequest:
    """One attack call: inputs in the model's layout, int labels, optional int targets."""

    model: WrappedModel
    x: np.ndarray
    y: np.ndarray
    targets: np.ndarray | None
    spec: ResolvedSpec
    seed: int
    batch_size: int = 256
    #: Other inputs the attacker holds (black-box cells run one sample at a time; attacks that
    #: start from an image of the target class pick it here). ``None``: ``x`` itself.
    pool: np.ndarray | None = None
    #: Told the exact library call just before the library runs (a black-box attack may be
    #: stopped at its budget and never return).
    on_call: Callable[[LibraryCall], None] | None = None

    def announce(self, call: LibraryCall) -> LibraryCall:
        """Pass ``call`` to :attr:`on_call` (if set) and return it."""
        if self.on_call is not None:
            self.on_call(call)
        return call


@dataclass
class LibraryCall:
    """The exact library callable and keyword arguments used: enough to re-run by hand."""

    callable: str
    kwargs: dict[str, Any]
    call_kwargs: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        record = {
            "callable": self.callable,
            "kwargs": self.kwargs,
            "call_kwargs": self.call_kwargs,
            "notes": self.notes,
        }
        return json.dumps(_finite(record), default=_jsonable, sort_keys=True, allow_nan=False)


@dataclass
class AttackOutput:
    x_adv: np.ndarray
    call: LibraryCall


@dataclass(frozen=True)
class Impl:
    """How one library implements one canonical attack.

    ``norms``/``frameworks`` the combinations it has; ``targeted``/``untargeted`` the modes.
    ``broken`` maps a framework to the reason the installed version fails there.
    ``run`` is the function ``(request) -> AttackOutput`` doing the translation.
    """

    norms: tuple[str, ...]
    run: Callable[[AttackRequest], AttackOutput]
    frameworks: tuple[str, ...] = ("torch", "tensorflow")
    targeted: bool = True
    untargeted: bool = True
    broken: dict[str, str] = field(default_factory=dict)
    why_not_targeted: str = "the library has no targeted mode for this attack"
    why_not_untargeted: str = "the library has no untargeted mode for this attack"


class Adapter(ABC):
    """Base class: support checks from the ``IMPLS`` table, dispatch to ``Impl.run``."""

    name: str
    package: str
    IMPLS: dict[str, Impl]

    def unsupported_reason(self, attack: str, norm: str, framework: str, targeted: bool) -> str | None:
        """``None`` if supported, else the reason (no library import needed)."""
        impl = self.IMPLS.get(attack)
        if impl is None:
            return f"{self.name} {self.version_hint()} has no {attack} attack"
        if framework not in impl.frameworks:
            return f"{self.name} has no {attack} for {framework}"
        if norm not in impl.norms:
            return f"{self.name} {attack} supports {'/'.join(impl.norms)}, not {norm}"
        if targeted and not impl.targeted:
            return f"{self.name} {attack}: {impl.why_not_targeted}"
        if not targeted and not impl.untargeted:
            return f"{self.name} {attack}: {impl.why_not_untargeted}"
        if framework in impl.broken:
            why = impl.broken[framework]
            return f"{self.name} {attack} on {framework} is broken in the installed version: {why}"
        return None

    def run(self, request: AttackRequest) -> AttackOutput:
        spec, fw = request.spec, request.model.framework
        reason = self.unsupported_reason(spec.attack, spec.norm, fw, spec.targeted)
        if reason:
            raise Unsupported(reason)
        out = self.IMPLS[spec.attack].run(request)
        x_adv = np.asarray(out.x_adv)
        if x_adv.shape != request.x.shape:
            raise RuntimeError(f"{self.name} returned shape {x_adv.shape}, expected {request.x.shape}")
        out.x_adv = x_adv.astype(np.float32, copy=False)
        return out

    #: Modules a cell imports *before* seeding (importing ``art.attacks.evasion`` draws from
    #: Python's ``random``: imported mid-cell, it would shift the first cell's random stream).
    MODULES: dict[str, tuple[str, ...]] = {}

    def import_library(self, framework: str) -> None:
        """Import this library's modules for ``framework`` (no-op once imported)."""
        import importlib

        for module in self.MODULES.get(framework, ()):
            importlib.import_module(module)

    def version_hint(self) -> str:
        """The installed version of the library, else ``not installed``."""
        return package_version(self.package)

    def model_form(self, model: WrappedModel) -> Any:
        """The model converted to this library's form, built once per wrapped model."""
        return model.library_form(self.name, lambda: self.convert(model))

    @abstractmethod
    def convert(self, model: WrappedModel) -> Any:
        """Build this library's form of ``model`` (ART estimator, Foolbox model, model_fn)."""


def _finite(o: Any) -> Any:
    """Strict JSON: non-finite floats (e.g. ``norm=np.inf``) become the strings "inf"/"nan"."""
    if isinstance(o, dict):
        return {str(k): _finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite(v) for v in o]
    if isinstance(o, float | np.floating) and not np.isfinite(o):
        return str(float(o))
    return o


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return _finite(o.item())
    if isinstance(o, np.ndarray):
        return f"<array shape={list(o.shape)} dtype={o.dtype}>"
    return repr(o)
