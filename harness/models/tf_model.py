"""TensorFlow/Keras side of model wrapping: a counting, float32-casting callable.

Counters are ``tf.Variable``s so they count inside ``tf.function`` graphs too (ART's TF2
``predict`` and CleverHans' gradient helpers are compiled). Backward rows are counted by an
identity with a custom gradient on the model output.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, cast

import numpy as np
import tensorflow as tf

from advharness.core.errors import HarnessError
from advharness.core.types import Layout, Outputs, ThreatModel
from advharness.judging.path import PathOps
from advharness.models.base import Counts, QueryCounter, WrappedModel
from advharness.models.layout import shape_from, shape_in


class TFCounter(QueryCounter):
    def __init__(self) -> None:
        self.forward = tf.Variable(0, dtype=tf.int64, trainable=False, name="advh_forward")
        self.backward = tf.Variable(0, dtype=tf.int64, trainable=False, name="advh_backward")
        #: forward rows counted in Python by the eager oracle path (no TF op per query)
        self.eager_forward = 0

    def read(self) -> Counts:
        return Counts(int(self.forward.numpy()) + self.eager_forward, int(self.backward.numpy()))

    def reset(self) -> None:
        self.forward.assign(0)
        self.backward.assign(0)
        self.eager_forward = 0


@functools.cache
def _could_record() -> Callable[[], bool]:
    try:
        from tensorflow.python.eager.record import could_possibly_record
    except ImportError:  # a TF without this internal: always take the guarded path
        return lambda: True
    return cast(Callable[[], bool], could_possibly_record)


def _inference_kwargs(model: Any) -> dict[str, Any]:
    """How to call ``model`` in inference mode: ``{}`` where Keras already does so, else
    ``{"training": False}``.

    Keras 3 resolves a layer's mode from the ``training`` argument, else an outer layer call,
    else a non-None default of ``training`` in the layer's ``call``, else inference. Passing
    ``training=False`` anyway costs ~0.6 ms a call on the eager MNIST CNN (a one-row query
    takes ~5 ms), which Foolbox does not pay (it calls ``model(x)``). So it is passed only
    when ``model`` is not a Keras layer or one of its layers defaults ``training`` to
    something other than None/False. (The oracles are called by the libraries directly,
    never from inside another layer's call.)"""
    import inspect

    import keras

    flatten = getattr(model, "_flatten_layers", None)
    if not isinstance(model, keras.layers.Layer) or flatten is None:
        return {"training": False}
    for layer in flatten(include_self=True, recursive=True):
        try:
            p = inspect.signature(layer.call).parameters.get("training")
        except (TypeError, ValueError):
            return {"training": False}
        if p is not None and p.default not in (None, False, inspect.Parameter.empty):
            return {"training": False}
    return {}


def _tape_recording() -> bool:
    """Whether a gradient tape could record an op now (True when TF cannot say)."""
    return bool(_could_record()())


class CountingCallable:
    """What the libraries call: ``f(x, training=False) -> logits``.

    As a query-only oracle (``access`` not white-box) any gradient taken through it is a
    threat-model violation, and a decision-based oracle returns one-hot top-1 labels.
    """

    def __init__(
        self,
        inner: Any,
        counter: TFCounter,
        probabilities: bool,
        owner: WrappedModel | None = None,
        access: ThreatModel = "white-box",
    ) -> None:
        self.inner = inner
        self.counter = counter
        self.probabilities = probabilities
        self.owner = owner
        self.access = access
        self._inference = _inference_kwargs(inner)  # how to call ``inner`` in inference mode

    def __call__(self, x: Any, training: bool = False, **_: Any) -> tf.Tensor:
        x = tf.cast(x, tf.float32)
        if self.access != "white-box" and tf.executing_eagerly() and not _tape_recording():
            answered = self._answer_eagerly(x)
            if answered is not None:
                return answered
        rows = tf.cast(tf.shape(x)[0], tf.int64)
        self.counter.forward.assign_add(rows)
        if self.access == "white-box":
            out = self._as_logits(self.inner(x, **self._inference))
            self._record(x, out)
            return self._count_backward(out, rows)
        out = self._answer(x)
        guarded = self._refuse_gradient(out)
        if self.access == "decision-based":
            # argmax has no gradient, so a tape would prune the path and never reach the guard:
            # keep a differentiable path that carries no information (0 * logits).
            labels = tf.one_hot(tf.argmax(out, axis=1), tf.shape(out)[1], dtype=tf.float32)
            return labels + 0.0 * guarded
        return guarded

    def _record(self, x: tf.Tensor, out: tf.Tensor) -> None:
        """Hand a white-box forward pass to the owner's path recorder: directly when eager,
        else through a ``tf.py_function`` that asks for the recorder when the graph runs (a
        library's compiled function is traced once and reused by later cells)."""
        owner = self.owner
        if owner is None or not owner.record_path:
            return
        if tf.executing_eagerly():
            if owner.recorder is not None:
                owner.recorder.observe(x, out)
            return

        def observe(rows: tf.Tensor, logits: tf.Tensor) -> None:
            if owner.recorder is not None:
                owner.recorder.observe(rows, logits)

        tf.py_function(observe, [tf.stop_gradient(x), tf.stop_gradient(out)], [])

    def _answer(self, x: tf.Tensor) -> tf.Tensor:
        """The oracle's logits. The model runs in TensorFlow (compiled when the library
        compiles); the rows and logits then pass through the owner's ledger (per-sample
        counts, budget) in Python through ``tf.py_function``: the path inside a compiled
        graph or under a gradient tape (:meth:`_answer_eagerly` is the direct one)."""
        out = self._as_logits(self.inner(x, **self._inference))
        owner = self.owner
        if owner is None:
            return out

        def answer(t: tf.Tensor, logits: tf.Tensor) -> np.ndarray:
            return owner.answer_query(t.numpy(), logits.numpy())

        answered = tf.py_function(answer, [x, out], tf.float32)
        answered.set_shape((None, owner.nb_classes))
        return answered

    def _answer_eagerly(self, x: tf.Tensor) -> tf.Tensor | None:
        """The oracle's answer with no TF op but the model's, when running eagerly with no
        gradient tape recording (so there is no gradient to refuse) under a ledger: counts
        in Python, one-hot labels made by the ledger. None when this path does not apply."""
        if self.owner is None or self.owner.ledger is None:
            return None
        return self._through_ledger(x.numpy(), self._as_logits(self.inner(x, **self._inference)).numpy())

    def _through_ledger(self, rows: np.ndarray, logits: np.ndarray) -> tf.Tensor:
        """Count ``rows`` in Python and answer them through the active ledger."""
        assert self.owner is not None and self.owner.ledger is not None
        self.counter.eager_forward += len(rows)
        return tf.convert_to_tensor(self.owner.ledger.answer(rows, logits, self.access == "decision-based"))

    def _as_logits(self, out: tf.Tensor) -> tf.Tensor:
        """As float32 (a float64 Keras model's outputs too); declared probability models:
        their log, which are valid logits."""
        out = tf.cast(out, tf.float32)
        return tf.math.log(tf.maximum(out, 1e-30)) if self.probabilities else out

    def compiled_forward(self, art_forward: Callable[..., Any]) -> Callable[..., Any]:
        """A replacement for ART's compiled ``_forward_pass(model, x, training)`` that keeps
        this oracle's ledger out of ART's graph (where it would sit behind a
        ``tf.py_function``): ART's own compiled pass runs the wrapped network itself, as
        it would without the harness, and the ledger runs in Python after it. ART's pass
        on this oracle serves every other case: another model, a graph being traced, a
        gradient tape recording, no ledger."""

        def forward_pass(model: Any, x: Any, training: bool) -> Any:
            if (
                model is not self
                or training
                or tf.inside_function()
                or _tape_recording()
                or self.owner is None
                or self.owner.ledger is None
            ):
                return art_forward(model, x, training)
            rows = (
                np.asarray(x, dtype=np.float32)
                if isinstance(x, np.ndarray)
                else tf.cast(x, tf.float32).numpy()
            )
            return self._through_ledger(rows, self._as_logits(art_forward(self.inner, rows, False)).numpy())

        return forward_pass

    def _refuse_gradient(self, out: tf.Tensor) -> tf.Tensor:
        owner = self.owner

        @tf.custom_gradient
        def identity(t: tf.Tensor) -> Any:
            def grad(dy: tf.Tensor) -> tf.Tensor:
                if owner is not None:
                    owner.report_violation("a gradient through the model was requested")
                return tf.zeros_like(dy)

            return tf.identity(t), grad

        return identity(out)

    def _count_backward(self, out: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
        counter = self.counter

        @tf.custom_gradient
        def identity(t: tf.Tensor) -> Any:
            def grad(dy: tf.Tensor) -> tf.Tensor:
                counter.backward.assign_add(rows)
                return dy

            return tf.identity(t), grad

        return identity(out)


def keras_input_shape(model: Any) -> tuple[int, ...] | None:
    """The per-sample input shape a Keras model states (None if unknown or not fixed)."""
    try:
        shape = model.input_shape
    except Exception:  # not built, several inputs, not a Keras model
        return None
    if not isinstance(shape, tuple) or len(shape) < 2:
        return None
    dims = shape[1:]
    return tuple(int(d) for d in dims) if all(isinstance(d, int) for d in dims) else None


def check_declared_shape(model: Any, wrapped: WrappedModel) -> None:
    """Refuse an ``input_shape`` that contradicts the Keras model's own, naming the fix."""
    known, s = keras_input_shape(model), wrapped.input_shape
    if known is None or known == s:
        return
    msg = (
        f"model {wrapped.name!r}: the Keras model takes inputs of shape "
        f"(N, {', '.join(map(str, known))}), but input_shape is {s}"
    )
    if len(s) == 3 and known == shape_in("NHWC", s):
        msg += f"; the model expects NHWC: set input_shape: {list(known)} and layout: NHWC"
    elif len(s) == 3 and known == shape_from("NHWC", s):
        msg += f"; the model expects NCHW: set input_shape: {list(known)} and layout: NCHW"
    else:
        msg += f"; set input_shape: {list(known)}"
    raise HarnessError(msg)


class TFModel(WrappedModel):
    framework = "tensorflow"

    def __init__(
        self,
        model: Any,
        *,
        input_shape: tuple[int, ...],
        nb_classes: int,
        bounds: tuple[float, float] = (0.0, 1.0),
        layout: Layout | None = None,
        outputs: Outputs = "logits",
        name: str = "tf-model",
    ) -> None:
        layout = layout or ("NHWC" if len(input_shape) == 3 else "flat")
        super().__init__(
            input_shape=input_shape,
            nb_classes=nb_classes,
            bounds=bounds,
            layout=layout,
            outputs=outputs,
            name=name,
        )
        from advharness.core.quiet import import_tensorflow

        import_tensorflow()  # devices initialised without the native banner (cuInit...)
        check_declared_shape(model, self)
        self._found_trainable = getattr(model, "trainable", None)
        if hasattr(model, "trainable"):
            model.trainable = False
        self.model = model
        self._counter = TFCounter()
        self._device = "cpu"

    @property
    def device(self) -> str:
        return self._device

    def place(self, device: str) -> None:
        """Run the model's calls (the libraries' and the harness's) on ``device``: ``cuda:N``
        is TensorFlow's ``/GPU:N`` (its variables stay where Keras put them; TensorFlow
        copies them once)."""
        from advharness.core.frameworks import check_device

        self._device = check_device(device)

    @property
    def tf_device(self) -> str:
        """TensorFlow's name of the model's device: ``/CPU:0`` or ``/GPU:N``."""
        if self._device == "cpu":
            return "/CPU:0"
        from advharness.core.frameworks import device_index

        return f"/GPU:{device_index(self._device)}"

    def device_scope(self) -> AbstractContextManager[None]:
        """``tf.device`` of the model's device: a ``cpu`` model stays on the CPU even where
        TensorFlow sees a GPU (where it would otherwise place the ops by itself)."""
        return cast(AbstractContextManager[None], tf.device(self.tf_device))

    def release(self) -> None:
        if self._found_trainable is not None:
            self.model.trainable = self._found_trainable

    @property
    def counter(self) -> TFCounter:
        return self._counter

    def _make_counted(self, access: ThreatModel) -> CountingCallable:
        return CountingCallable(self.model, self._counter, self.outputs == "probabilities", self, access)

    def _raw_forward(self, x: np.ndarray) -> np.ndarray:
        with self.device_scope():
            return np.asarray(self.model(tf.convert_to_tensor(x), training=False))

    def to_tensor(self, x: np.ndarray) -> Any:
        return tf.convert_to_tensor(np.asarray(x, dtype=np.float32))

    def _make_path_ops(
        self,
        x: np.ndarray,
        norm: str,
        separation: np.ndarray | None,
        remember: Callable[[np.ndarray], None],
    ) -> PathOps:
        from advharness.models.tf_path import TFPathOps

        return TFPathOps(x, norm, separation, remember)

    def input_gradients(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        xt = tf.convert_to_tensor(np.asarray(x, np.float32))
        with self.device_scope(), tf.GradientTape() as tape:
            tape.watch(xt)
            out = tf.cast(self.model(xt, training=False), tf.float64)
            if self.outputs == "probabilities":
                out = tf.math.log(tf.maximum(out, 1e-30))
            loss = tf.reduce_sum(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=np.asarray(y, np.int64), logits=out)
            )
        grad = tape.gradient(loss, xt)
        if grad is None:  # the output does not depend on the input
            return np.zeros_like(np.asarray(x, np.float32))
        return np.asarray(grad.numpy(), np.float32)

    def parameter_arrays(self) -> Iterator[tuple[str, np.ndarray]]:
        """Keras ``weights`` (trainable and not), else a ``tf.Module``'s ``variables``, by
        position (Keras' variable paths carry per-process layer counters)."""
        variables = getattr(self.model, "weights", None)
        for i, v in enumerate(variables if variables is not None else getattr(self.model, "variables", ())):
            yield str(i), np.asarray(v)
