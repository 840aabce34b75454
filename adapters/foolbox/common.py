"""Helpers every Foolbox attack shares: model conversion and the one call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from advharness.adapters.base import AttackOutput, AttackRequest, LibraryCall
from advharness.core.errors import HarnessError, Unsupported
from advharness.models.base import WrappedModel

KwargsAndNotes = tuple[dict[str, Any], list[str]]


L0_FMN_OVERFLOW = (
    "foolbox fmn on {framework} is broken in the installed version for this run: "
    "L0FMNAttack crashed ({error}): its L0 projection indexes column `epsilon` "
    "(fast_minimum_norm.py:501), which overflows once a sample stays "
    "non-adversarial until its L0 budget reaches the number of input features "
    "(about 120 consecutive steps for 784 features with gamma=0.05); use fewer "
    "steps or a smaller gamma"
)


def index_errors(framework: str) -> tuple[type[BaseException], ...]:
    """The exception types an out-of-range index raises in each framework."""

    def tf_errors() -> tuple[type[BaseException], ...]:
        import tensorflow as tf

        return (tf.errors.InvalidArgumentError,)

    by_framework: dict[str, Callable[[], tuple[type[BaseException], ...]]] = {
        "torch": lambda: (IndexError,),
        "tensorflow": tf_errors,
    }
    return by_framework[framework]()


def run_foolbox(
    request: AttackRequest,
    class_name: str,
    kwargs: dict[str, Any],
    notes: list[str],
    attack_class: type | None = None,
) -> AttackOutput:
    """Build ``foolbox.attacks.<class_name>(**kwargs)`` + escape hatch, run it in chunks, record it.

    ``attack_class``: a subclass to build instead (a workaround; recorded by its own name).

    Fixed-budget specs are called with ``epsilons=eps`` and return ``clipped``; minimum-norm
    specs with ``epsilons=None`` and return ``raw``. Shared by the white- and black-box tables.
    """
    import eagerpy as ep
    import foolbox

    spec, model = request.spec, request.model
    extra = spec.options_for("foolbox")
    notes += [f"library_options override: {k}={v!r}" for k, v in extra.items() if k in kwargs]
    kwargs.update(extra)
    cls = attack_class if attack_class is not None else getattr(foolbox.attacks, class_name)
    try:
        attack = cls(**kwargs)
    except TypeError as e:
        raise HarnessError(f"library_options.foolbox for {class_name}: {e}") from None

    fixed = spec.kind == "fixed"
    epsilons = float(spec.eps) if fixed and spec.eps is not None else None
    criterion_cls: Any
    if spec.targeted:
        if request.targets is None:
            raise HarnessError(f"{spec.label}: a targeted attack needs target classes")
        criterion_cls, classes, criterion = (
            foolbox.criteria.TargetedMisclassification,
            request.targets,
            "TargetedMisclassification(targets)",
        )
    else:
        criterion_cls, classes, criterion = (
            foolbox.criteria.Misclassification,
            request.y,
            "Misclassification(labels)",
        )
    notes.append(
        "returned Foolbox's `clipped` output (perturbation projected onto the eps ball)"
        if fixed
        else "epsilons=None: Foolbox was not asked to clip to eps; returned `raw`, the harness measures norms"
    )
    if model.access != "white-box":
        notes.append(f"run under the {model.access} oracle the harness granted")

    fmodel = model.library_form("foolbox", lambda: CONVERTERS[model.framework](model))
    batch = max(1, int(request.batch_size))
    if len(request.x) > batch:
        notes.append(f"called once per chunk of {batch} samples (Foolbox does not mini-batch)")
    call = request.announce(
        LibraryCall(
            callable=(
                f"foolbox.attacks.{class_name}"
                if attack_class is None
                else f"{attack_class.__module__}.{attack_class.__qualname__}"
            ),
            kwargs=kwargs,
            call_kwargs={"epsilons": epsilons, "criterion": criterion},
            notes=notes,
        )
    )
    outs = []
    for i in range(0, len(request.x), batch):
        xt = model.to_tensor(request.x[i : i + batch])
        labels = ep.from_numpy(ep.astensor(xt), np.asarray(classes[i : i + batch], np.int64))
        try:
            raw, clipped, _ = attack(fmodel, xt, criterion_cls(labels.raw), epsilons=epsilons)
        except index_errors(model.framework) as e:
            if class_name != "L0FMNAttack":
                raise
            raise Unsupported(
                L0_FMN_OVERFLOW.format(framework=model.framework, error=f"{type(e).__name__}: {e}")
            ) from e
        outs.append(ep.astensor(clipped if fixed else raw).numpy())
    x_adv = np.concatenate(outs) if outs else request.x.copy()
    return AttackOutput(x_adv=x_adv.astype(np.float32, copy=False), call=call)


def torch_model(model: WrappedModel) -> Any:
    import foolbox

    from advharness.models.torch_model import TorchModel

    assert isinstance(model, TorchModel)
    return foolbox.PyTorchModel(
        model.counted, bounds=model.bounds, device=model.torch_device, preprocessing=None
    )


def tf_model(model: WrappedModel) -> Any:
    import foolbox

    from advharness.models.tf_model import TFModel

    assert isinstance(model, TFModel)
    # The model entry's device (Foolbox's own default calls the deprecated
    # tf.test.is_gpu_available() and would take the first GPU whatever the entry says).
    return foolbox.TensorFlowModel(
        model.counted, bounds=model.bounds, device=model.tf_device, preprocessing=None
    )


CONVERTERS: dict[str, Callable[[WrappedModel], Any]] = {"torch": torch_model, "tensorflow": tf_model}
