"""RobustBench models: an architecture of the ``robustbench`` package's model zoo, with
weights from a local file (nothing is downloaded).

A models entry ``{robustbench: Standard, dataset: cifar10, threat_model: Linf, weights:
path/to/Standard.pt, framework: torch}`` names the model as RobustBench's own model dicts do
(``robustbench.model_zoo.model_dicts[dataset][threat_model][name]["model"]``), builds that
architecture, loads the checkpoint into it and wraps it: inputs (3, 32, 32) NCHW in [0, 1]
(RobustBench models normalise inside), 10 logits. The checkpoint is read like RobustBench's
``load_model`` reads its downloads: a state dict, or a dict holding one under
``state_dict``, with ``module.`` and ``model.`` key prefixes removed; it is loaded with
``weights_only=True``, so a checkpoint that pickles other objects is refused.

``robustbench`` is an optional extra (``pip install 'advharness[robustbench]'``); without
it, a RobustBench model's cells are ``unsupported`` rows naming the extra.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from typing import TYPE_CHECKING, Any

from advharness.core.errors import HarnessError, one_line
from advharness.core.frameworks import require_framework
from advharness.core.versions import package_version
from advharness.zoo.factory import file_sha256, wrap_entry

if TYPE_CHECKING:
    from advharness.config.experiment import ModelConfig
    from advharness.models.base import WrappedModel

#: Key prefixes RobustBench's ``load_model`` strips from checkpoints (DataParallel, wrappers).
STRIPPED_PREFIXES = ("module.", "model.")


def _what(cfg: ModelConfig) -> str:
    return f"model {cfg.key!r} (RobustBench {cfg.robustbench}, {cfg.dataset} {cfg.threat_model})"


def architecture(cfg: ModelConfig) -> Any:
    """The untrained ``torch.nn.Module`` RobustBench's model dicts give for ``cfg``."""
    require_framework("torch", _what(cfg))
    require_framework("robustbench", _what(cfg))
    try:
        from robustbench.model_zoo import model_dicts
        from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

        by_threat = model_dicts[BenchmarkDataset(cfg.dataset)]
        threat = ThreatModel(cfg.threat_model)
    except Exception as e:  # an installed robustbench that fails to import (e.g. its torchvision)
        raise HarnessError(f"{_what(cfg)}: cannot read robustbench's model zoo ({one_line(e)})") from None
    if threat not in by_threat:
        known = ", ".join(t.value for t in by_threat)
        raise HarnessError(
            f"{_what(cfg)}: robustbench has no {cfg.dataset} {cfg.threat_model} models (has: {known})"
        )
    zoo = by_threat[threat]
    entry = zoo.get(cfg.robustbench)
    if entry is None:
        near = sorted(n for n in zoo if n.lower().startswith(str(cfg.robustbench)[:4].lower()))
        hint = f"; similar: {', '.join(near[:8])}" if near else f" ({len(zoo)} models there)"
        raise HarnessError(f"{_what(cfg)}: no such model in robustbench's model zoo{hint}")
    if isinstance(entry.get("gdrive_id"), list):
        raise HarnessError(f"{_what(cfg)}: an ensemble of several checkpoints, not supported")
    try:
        return entry["model"]()
    except Exception as e:
        raise HarnessError(f"{_what(cfg)}: building the architecture failed ({one_line(e)})") from None


def state_dict(checkpoint: Any) -> dict[str, Any]:
    """The state dict in a RobustBench checkpoint: the dict itself or its ``state_dict``
    entry, with :data:`STRIPPED_PREFIXES` removed from the keys."""
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict):
        raise HarnessError(f"expected a state dict, got {type(checkpoint).__name__}")
    out: dict[str, Any] = {}
    for key, value in checkpoint.items():
        for prefix in STRIPPED_PREFIXES:
            key = key.removeprefix(prefix)
        out[key] = value
    return out


def load_robustbench_model(cfg: ModelConfig) -> WrappedModel:
    """Build ``cfg``'s architecture, load its weights and wrap it (``name`` and ``family``:
    its key)."""
    import torch

    assert cfg.weights is not None and cfg.input_shape is not None and cfg.nb_classes is not None  # validated
    net = architecture(cfg)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Detected pickle protocol")
            checkpoint = torch.load(cfg.weights, map_location="cpu", weights_only=True)
        net.load_state_dict(state_dict(checkpoint))
    except Exception as e:
        raise HarnessError(f"{_what(cfg)}: cannot load weights {cfg.weights} ({one_line(e)})") from None
    net.eval()
    model = wrap_entry(
        net,
        cfg,
        {
            "robustbench": cfg.robustbench,
            "dataset": cfg.dataset,
            "threat_model": cfg.threat_model,
            "robustbench_version": package_version("robustbench"),
            "weights": cfg.weights,
            "weights_sha256": file_sha256(cfg.weights),
        },
    )
    return model


def robustbench_fingerprint(cfg: ModelConfig) -> str:
    """sha256 of a RobustBench model's identity: its name, dataset and threat model, the
    installed robustbench version, the wrapping and the weights file's bytes."""
    assert cfg.weights is not None  # validated
    facts = {
        "robustbench": cfg.robustbench,
        "dataset": cfg.dataset,
        "threat_model": cfg.threat_model,
        "version": package_version("robustbench"),
        "input_shape": list(cfg.input_shape or ()),
        "bounds": list(cfg.bounds),
    }
    h = hashlib.sha256(json.dumps(facts, sort_keys=True).encode())
    h.update(b"weights:" + file_sha256(cfg.weights).encode())
    return h.hexdigest()
