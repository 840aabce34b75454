"""The optional frameworks: each is an extra of the package (``pip install 'advharness[torch]'``).

``torch``, ``tensorflow`` and ``ray`` are not required: with one missing, the cells that need
it are ``unsupported`` rows whose reason says what to install, and the Ray backend is a
one-line error. Whether one is installed is asked of the import system
(:func:`importlib.util.find_spec`, which does not import it), each time: nothing is decided
when this module is imported.
"""

from __future__ import annotations

import importlib.util
import re

from advharness.core.errors import HarnessError

#: The optional frameworks, each with its extra (``pip install 'advharness[EXTRA]'``).
OPTIONAL_FRAMEWORKS: dict[str, str] = {"torch": "torch", "tensorflow": "tensorflow", "ray": "ray"}
#: Optional model sources, each with its extra: only the models that come from one need it.
OPTIONAL_MODEL_SOURCES: dict[str, str] = {"robustbench": "robustbench"}


def framework_available(name: str) -> bool:
    """Whether the framework (its import name: ``torch``, ``tensorflow``, ``ray``) can be
    found by the import system; it is not imported."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # blocked, or a broken entry in sys.modules
        return False


def missing_framework_reason(name: str) -> str | None:
    """``None`` when ``name`` is installed, else one line naming the extra to install, e.g.
    ``tensorflow is not installed: pip install 'advharness[tensorflow]'``."""
    if framework_available(name):
        return None
    extra = OPTIONAL_FRAMEWORKS.get(name) or OPTIONAL_MODEL_SOURCES.get(name, "all")
    return f"{name} is not installed: pip install 'advharness[{extra}]'"


def require_framework(name: str, what: str) -> None:
    """Raise a one-line :class:`HarnessError`, ``WHAT: NAME is not installed: pip install ...``,
    unless ``name`` is installed (``what``: what needs it)."""
    reason = missing_framework_reason(name)
    if reason is not None:
        raise HarnessError(f"{what}: {reason}")


#: The devices a model entry may name (one vocabulary for both frameworks): ``cpu``, ``cuda``
#: (the first GPU) or ``cuda:N``; TensorFlow runs ``cuda:N`` as its ``/GPU:N``.
DEVICE_SPELLING = re.compile(r"cpu|cuda(:[0-9]+)?")


def check_device(device: str) -> str:
    """``device`` if spelled ``cpu``, ``cuda`` or ``cuda:N``; else a one-line error."""
    if not DEVICE_SPELLING.fullmatch(device):
        raise HarnessError(f"device must be cpu, cuda or cuda:N (N a GPU index), got {device!r}")
    return device


def device_index(device: str) -> int:
    """The GPU index of ``cuda``/``cuda:N`` (0 for ``cuda``)."""
    return int(device.partition(":")[2] or 0)


def missing_device_reason(framework: str, device: str) -> str | None:
    """``None`` when ``framework`` (installed) can run on ``device`` here, else one line
    naming the device: ``device cuda:1 is not available to torch here (1 CUDA device(s)
    visible)``. Asks the framework (imported here, lazily); ``cpu`` is always available."""
    if check_device(device) == "cpu":
        return None
    if framework == "torch":
        import torch

        found = torch.cuda.device_count() if torch.cuda.is_available() else 0
        what = "CUDA device(s)"
    else:
        from advharness.core.quiet import import_tensorflow

        import_tensorflow()
        import tensorflow as tf

        found = len(tf.config.list_physical_devices("GPU"))
        what = "GPU(s) visible to TensorFlow"
    if device_index(device) < found:
        return None
    return f"device {device} is not available to {framework} here ({found} {what})"
