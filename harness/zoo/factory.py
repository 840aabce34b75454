"""Models built by the user's own code: ``factory: "package.module:function"`` in a model entry.

The factory is called with no arguments and returns a ``torch.nn.Module`` or a Keras model;
``weights`` (optional) are then loaded into it (torch: a state dict read with
``weights_only=True``; Keras: ``load_weights``) and it is wrapped with the entry's
``input_shape``, ``nb_classes``, ``bounds``, ``layout`` and ``outputs``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from advharness.core.errors import HarnessError, one_line
from advharness.core.frameworks import require_framework
from advharness.core.imports import resolve_factory
from advharness.core.interrupts import die_with_parent, exit_description

if TYPE_CHECKING:
    from advharness.config.experiment import ModelConfig
    from advharness.models.base import WrappedModel


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _wrapping(cfg: ModelConfig) -> dict[str, Any]:
    return {
        "framework": cfg.framework,
        "input_shape": list(cfg.input_shape or ()),
        "nb_classes": cfg.nb_classes,
        "bounds": list(cfg.bounds),
        "layout": cfg.resolved_layout,
        "outputs": cfg.outputs,
    }


def model_fingerprint(cfg: ModelConfig) -> str:
    """sha256 of a factory model's identity: the import path, the source file of its module
    (when it has one), the weights file's bytes and the wrapping facts."""
    if cfg.factory is None:
        raise HarnessError(f"model {cfg.key!r} is not a factory model")
    resolve_factory(cfg.factory)  # imports the module (or says why it cannot)
    h = hashlib.sha256()
    h.update(json.dumps({"factory": cfg.factory, **_wrapping(cfg)}, sort_keys=True).encode())
    source = getattr(sys.modules[cfg.factory.partition(":")[0]], "__file__", None)
    if source and Path(source).is_file():
        h.update(b"source:" + Path(source).read_bytes())
    if cfg.weights is not None:
        h.update(b"weights:" + file_sha256(cfg.weights).encode())
    return h.hexdigest()


def _load_weights(net: Any, cfg: ModelConfig) -> None:
    assert cfg.weights is not None
    try:
        if cfg.framework == "torch":
            import torch

            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Detected pickle protocol")
                state = torch.load(cfg.weights, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        else:
            net.load_weights(cfg.weights)
    except Exception as e:
        raise HarnessError(f"model {cfg.key!r}: cannot load weights {cfg.weights} ({one_line(e)})") from None


def _check_type(net: Any, cfg: ModelConfig) -> None:
    if cfg.framework == "torch":
        import torch

        ok, want = isinstance(net, torch.nn.Module), "a torch.nn.Module"
    else:
        import keras

        ok, want = isinstance(net, keras.Model), "a Keras model"
    if not ok:
        raise HarnessError(
            f"model {cfg.key!r}: factory {cfg.factory} returned a "
            f"{type(net).__name__}, not {want} (framework: {cfg.framework})"
        )


def load_factory_model(cfg: ModelConfig) -> WrappedModel:
    """Build, load and wrap a factory model; ``name`` and ``family`` are its key."""

    if cfg.factory is None or cfg.input_shape is None or cfg.nb_classes is None:
        raise HarnessError(f"model {cfg.key!r} is not a factory model")
    require_framework(cfg.framework, f"model {cfg.key!r} ({cfg.framework})")
    make = resolve_factory(cfg.factory)
    try:
        net = make()
    except Exception as e:
        raise HarnessError(f"model {cfg.key!r}: factory {cfg.factory} failed ({one_line(e)})") from None
    _check_type(net, cfg)
    if cfg.weights is not None:
        _load_weights(net, cfg)
    info = {
        "factory": cfg.factory,
        "weights": cfg.weights,
        "weights_sha256": file_sha256(cfg.weights) if cfg.weights is not None else None,
    }
    return wrap_entry(net, cfg, info)


def wrap_entry(net: Any, cfg: ModelConfig, info: dict[str, Any]) -> WrappedModel:
    """``net`` wrapped as models entry ``cfg`` states (shape, classes, bounds, layout,
    outputs), named and grouped by its key, with ``info`` as its ``recipe_info``."""
    from advharness.models.wrap import wrap_model

    assert cfg.input_shape is not None and cfg.nb_classes is not None  # validated
    model = wrap_model(
        net,
        input_shape=tuple(cfg.input_shape),
        nb_classes=cfg.nb_classes,
        bounds=cfg.bounds,
        layout=cfg.resolved_layout,
        outputs=cfg.outputs,
        name=cfg.key,
    )
    model.family = cfg.key
    model.recipe_info = info  # type: ignore[attr-defined]
    return model


def check_factory_model(cfg: ModelConfig, time_limit_s: float) -> None:
    """Build ``cfg``'s model once in a child process, so that a factory that hangs, calls
    ``sys.exit`` or ends its process is a one-line :class:`HarnessError` naming the model
    instead of a run that hangs or vanishes. The child is killed past ``time_limit_s``."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_build_in_child, args=(cfg, send), name=f"advh-build-{cfg.key}", daemon=True)
    child.start()
    send.close()
    what = f"model {cfg.key!r}: factory {cfg.factory}"
    try:
        if not receive.poll(time_limit_s):  # neither an answer nor the child's end in time
            raise HarnessError(f"{what} did not return within {time_limit_s:g} s (model_build_time_limit_s)")
        try:
            problem: str | None = receive.recv()
        except EOFError:  # the child ended without a word: os._exit, a signal
            child.join(10)
            raise HarnessError(
                f"{what} ended its process while building the model ({exit_description(child.exitcode)})"
            ) from None
        if problem is not None:
            raise HarnessError(problem)
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receive.close()


def _build_in_child(cfg: ModelConfig, send: Any) -> None:
    """Child side of :func:`check_factory_model`: ``None`` when the model builds, else the
    one-line problem."""
    die_with_parent()
    what = f"model {cfg.key!r}: factory {cfg.factory}"
    problem: str | None = None
    try:
        load_factory_model(cfg)
    except HarnessError as e:
        problem = str(e)
    except SystemExit as e:
        problem = f"{what} called sys.exit({e.code!r}) while building the model"
    except BaseException as e:  # reported to the parent as the model's problem
        problem = f"{what} failed ({one_line(e)})"
    send.send(problem)
    send.close()
