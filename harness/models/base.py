"""Framework-neutral model wrapping: bounds, shape, layout, classes, logits, query counting.

A :class:`WrappedModel` owns two ways into the network:

* ``predict_logits`` - the harness's own, uncounted forward pass (used by the referee);
* ``counted`` - a framework-native callable (a ``torch.nn.Module`` or a TF callable) that
  every library's queries go through. It casts inputs to float32, counts forward rows and
  backward rows, and (for declared probability models) turns probabilities into logits.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from advharness.core.errors import HarnessError, one_line
from advharness.core.types import THREAT_MODELS, Framework, Layout, Outputs, ThreatModel

if TYPE_CHECKING:
    from advharness.judging.ledger import QueryLedger
    from advharness.judging.path import PathOps, PathRecorder
    from advharness.models.detector import Detector

#: Separations of recent batches kept per model (see :meth:`WrappedModel.path_ops`).
_SEPARATIONS_KEPT = 8


class ThreatModelViolation(RuntimeError):
    """An attack asked a query-only oracle for a gradient."""


@dataclass(frozen=True)
class Counts:
    """Forward and backward rows (samples) that went through a counted model."""

    forward: int
    backward: int


class QueryCounter(ABC):
    """Counts rows passed forward and backward through the counted model."""

    @abstractmethod
    def read(self) -> Counts: ...

    @abstractmethod
    def reset(self) -> None: ...


class WrappedModel(ABC):
    """A classifier with everything the libraries need stated explicitly."""

    framework: Framework

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        nb_classes: int,
        bounds: tuple[float, float],
        layout: Layout,
        outputs: Outputs = "logits",
        name: str = "model",
    ) -> None:
        lo, hi = (float(b) for b in bounds)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise HarnessError(f"model {name!r}: bounds must be finite with low < high, got {bounds}")
        if nb_classes < 2:
            raise HarnessError(f"model {name!r}: nb_classes must be >= 2, got {nb_classes}")
        if layout not in ("NCHW", "NHWC", "flat"):
            raise HarnessError(f"model {name!r}: layout must be NCHW, NHWC or flat, got {layout!r}")
        if outputs not in ("logits", "probabilities"):
            raise HarnessError(f"model {name!r}: outputs must be 'logits' or 'probabilities'")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.nb_classes = int(nb_classes)
        self.bounds = (lo, hi)
        self.layout: Layout = layout
        self.outputs: Outputs = outputs
        self.name = name
        #: Rows of the head-to-head table group models by family (the recipe for built-ins).
        self.family = name
        self._library_forms: dict[tuple[str, str], Any] = {}
        self._counted_by_access: dict[str, Any] = {}
        #: The access level granted to the libraries now (see :meth:`with_access`).
        self.access: ThreatModel = "white-box"
        #: First threat-model violation seen under :meth:`with_access`, if any.
        self.violation: str | None = None
        #: Per-sample query accounting of the running black-box cell (see :meth:`with_ledger`).
        self.ledger: QueryLedger | None = None
        #: What the running white-box cell's attack passes through (see :meth:`with_recorder`).
        self.recorder: PathRecorder | None = None
        #: Whether the counted callable hands white-box forward passes to a recorder at all
        #: (False: not even the hook is built, e.g. a benchmark's baseline).
        self.record_path = True
        #: Defended variants (see :mod:`advharness.zoo.defenses`): what the defense is,
        #: whether the forward pass draws random numbers, how many times the referee
        #: evaluates each input (a sample is robust only if it survives every evaluation),
        #: the deployed model an adaptive surrogate's verdicts are judged on, and a detector
        #: an adversarial input must also evade.
        self.defense_info: dict[str, Any] | None = None
        self.randomized = False
        self.evaluations = 1
        self.deployed: WrappedModel | None = None
        self.detector: Detector | None = None
        self._separations: dict[tuple[str, str], np.ndarray] = {}

    # -- framework-specific ------------------------------------------------------------
    @property
    @abstractmethod
    def counter(self) -> QueryCounter: ...

    @property
    def counted(self) -> Any:
        """The framework-native callable that all libraries' queries go through.

        One callable per access level: a white-box one, and query-only oracles that refuse
        gradients (score-based) and also reveal only a one-hot top-1 label (decision-based).
        """
        if self.access not in self._counted_by_access:
            self._counted_by_access[self.access] = self._make_counted(self.access)
        return self._counted_by_access[self.access]

    @abstractmethod
    def _make_counted(self, access: ThreatModel) -> Any: ...

    def report_violation(self, what: str) -> None:
        """Record and raise a threat-model violation (called by the oracles)."""
        msg = f"threat-model violation: {what} under a {self.access} threat model"
        self.violation = self.violation or msg
        raise ThreatModelViolation(msg)

    @contextmanager
    def with_access(self, access: ThreatModel) -> Iterator[None]:
        """Grant the libraries ``access`` for the duration of the block; clear violations."""
        if access not in THREAT_MODELS:
            raise HarnessError(f"unknown threat model {access!r}; known: {', '.join(THREAT_MODELS)}")
        previous, self.access, self.violation = self.access, access, None
        try:
            yield
        finally:
            self.access = previous

    @contextmanager
    def with_ledger(self, ledger: QueryLedger) -> Iterator[None]:
        """Route the query-only oracles' answers through ``ledger`` for the block."""
        previous, self.ledger = self.ledger, ledger
        try:
            yield
        finally:
            self.ledger = previous

    @contextmanager
    def with_recorder(self, recorder: PathRecorder) -> Iterator[None]:
        """Hand every white-box forward pass of the counted callable to ``recorder``."""
        previous, self.recorder = self.recorder, recorder
        try:
            yield
        finally:
            self.recorder = previous

    def path_ops(self, x: np.ndarray, norm: str) -> PathOps:
        """The framework's side of path recording for a cell on ``x`` (model layout) in
        ``norm``. The originals' separations (pairwise, O(n^2 d)) are computed on the first
        forward pass, once per batch and norm, and kept for the model's next cells."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        key = (hashlib.blake2b(x.data, digest_size=16).hexdigest() + str(x.shape), norm)

        def remember(separation: np.ndarray) -> None:
            self._separations[key] = separation
            while len(self._separations) > _SEPARATIONS_KEPT:
                self._separations.pop(next(iter(self._separations)))

        return self._make_path_ops(x, norm, self._separations.get(key), remember)

    @abstractmethod
    def _make_path_ops(
        self,
        x: np.ndarray,
        norm: str,
        separation: np.ndarray | None,
        remember: Callable[[np.ndarray], None],
    ) -> PathOps: ...

    @abstractmethod
    def input_gradients(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Uncounted gradient of the cross-entropy (float64, summed over the batch) of the
        model's logits against ``y`` with respect to the float32 batch ``x``."""

    def answer_query(self, x: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """What a query-only oracle answers for ``x``, given the model's float32 ``logits``
        for it (counting rows is the caller's): through the active ledger (per-sample
        counts, budget) when a black-box cell runs, else the logits themselves."""
        if self.ledger is not None:
            return self.ledger.answer(x, logits)
        return logits

    @abstractmethod
    def to_tensor(self, x: np.ndarray) -> Any:
        """``x`` as a float32 tensor of this framework, on the model's device."""

    @abstractmethod
    def _raw_forward(self, x: np.ndarray) -> np.ndarray:
        """Uncounted forward pass of one float32 batch; returns model outputs."""

    # -- shared ------------------------------------------------------------------------
    @property
    def device(self) -> str:
        return "cpu"

    def place(self, device: str) -> None:
        """Evaluate and attack the model on ``device`` (``cpu``, ``cuda``, ``cuda:N``; see
        :func:`advharness.core.frameworks.check_device`). Only ``cpu`` unless a framework's
        wrapper says otherwise."""
        if device != "cpu":
            raise HarnessError(
                f"model {self.name!r}: a {type(self).__name__} runs on the cpu only, not {device}"
            )

    def device_scope(self) -> AbstractContextManager[None]:
        """The context a library call on this model runs in (TensorFlow: its ``tf.device``)."""
        return nullcontext()

    def predict_logits(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Harness-side forward pass (not counted): logits as float32 numpy."""
        x = np.asarray(x, dtype=np.float32)
        if 0 < len(x) <= batch_size:  # one chunk (every oracle query): no copy
            out = self._raw_forward(x)
        else:
            outs = [self._raw_forward(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
            out = np.concatenate(outs) if outs else np.zeros((0, self.nb_classes), np.float32)
        if self.outputs == "probabilities":
            out = np.log(np.clip(out, 1e-30, None))
        return out.astype(np.float32, copy=False)

    def predict(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Harness-side predicted labels (int64)."""
        return cast(np.ndarray, self.predict_logits(x, batch_size).argmax(axis=1).astype(np.int64))

    def check_inputs(self, x: np.ndarray) -> None:
        """Raise a one-line error if ``x`` does not fit this model's shape and bounds."""
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise HarnessError(
                f"model {self.name!r} expects inputs of shape (N, "
                f"{', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}"
            )
        if not np.all(np.isfinite(x)):
            raise HarnessError(f"inputs for model {self.name!r} contain NaN or inf")
        lo, hi = self.bounds
        if x.size and (x.min() < lo or x.max() > hi):
            raise HarnessError(
                f"inputs for model {self.name!r} lie outside its bounds [{lo:g}, {hi:g}] "
                f"(min {x.min():g}, max {x.max():g})"
            )

    def check_outputs(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """The model's logits for the clean batch ``x``, after refusing (one line, naming the
        model) a forward pass that raises, outputs of the wrong shape, NaN/inf outputs, and
        probabilities declared as logits (or vice versa)."""
        if len(x) == 0:
            raise HarnessError(f"inputs for model {self.name!r} are an empty batch (0 samples)")
        x = np.asarray(x, dtype=np.float32)
        try:
            outs = [
                np.asarray(self._raw_forward(x[i : i + batch_size])) for i in range(0, len(x), batch_size)
            ]
        except Exception as e:
            raise HarnessError(
                f"model {self.name!r}: forward pass on the clean inputs failed ({one_line(e)})"
            ) from None
        bad = next((o for o in outs if o.ndim != 2 or o.shape[1] != self.nb_classes), None)
        if bad is not None:
            raise HarnessError(
                f"model {self.name!r} returned outputs of shape {bad.shape}; expected (N, {self.nb_classes})"
            )
        raw = np.concatenate(outs)
        finite = np.isfinite(raw).all(axis=1)
        if not finite.all():
            raise HarnessError(
                f"model {self.name!r} returned NaN or inf outputs for {int((~finite).sum())} of "
                f"{len(raw)} clean inputs (first: sample {int(np.argmin(finite))})"
            )
        looks_like_probs = bool(
            np.all(raw >= 0) and np.all(raw <= 1) and np.allclose(raw.sum(axis=1), 1.0, atol=1e-3)
        )
        if self.outputs == "logits" and looks_like_probs:
            raise HarnessError(
                f"model {self.name!r} outputs probabilities (rows are non-negative and sum to 1); "
                "remove the softmax layer, or declare outputs='probabilities' so the harness "
                "takes their log"
            )
        if self.outputs == "probabilities" and not looks_like_probs:
            raise HarnessError(
                f"model {self.name!r} is declared to output probabilities but its rows do not sum to 1"
            )
        if self.outputs == "probabilities":
            raw = np.log(np.clip(raw, 1e-30, None))
        return raw.astype(np.float32, copy=False)

    @abstractmethod
    def parameter_arrays(self) -> Iterator[tuple[str, np.ndarray]]:
        """Every parameter and buffer of the network as (name, array), in a fixed order."""

    def parameter_hash(self) -> str:
        """sha256 over the network's parameters and buffers (names, dtypes, shapes, bytes)
        and the wrapping facts (shape, classes, bounds, layout, outputs): what decides its
        results, whoever loaded the weights (the device is keyed by the cell, not here).
        Cheap (one pass over the weights' bytes)."""
        facts = {k: v for k, v in self.describe().items() if k not in ("name", "family", "device")}
        h = hashlib.sha256(json.dumps(facts, sort_keys=True).encode())
        for name, a in self.parameter_arrays():
            if a.dtype.hasobject:  # not plain numbers: their text
                a = np.frombuffer(repr(a.tolist()).encode(), np.uint8)
            a = np.ascontiguousarray(a)
            h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
            h.update(a.data)
        return h.hexdigest()

    def library_form(self, library: str, build: Any) -> Any:
        """This model in a library's form, built once per (library, access level)."""
        key = (library, self.access)
        if key not in self._library_forms:
            self._library_forms[key] = build()
        return self._library_forms[key]

    @abstractmethod
    def release(self) -> None:
        """Give the network back as :func:`wrap_model` found it (train/eval mode,
        ``requires_grad`` / ``trainable``); the wrapper is not for use afterwards."""

    def __enter__(self) -> WrappedModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "framework": self.framework,
            "device": self.device,
            "input_shape": list(self.input_shape),
            "layout": self.layout,
            "nb_classes": self.nb_classes,
            "bounds": list(self.bounds),
            "outputs": self.outputs,
        }
