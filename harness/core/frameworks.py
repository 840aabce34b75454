"""The optional frameworks: each is an extra of the package (``pip install 'advharness[torch]'``).

``torch``, ``tensorflow`` and ``ray`` are not required: with one missing, the cells that need
it are ``unsupported`` rows whose reason says what to install, and the Ray backend is a
one-line error. Whether one is installed is asked of the import system
(:func:`importlib.util.find_spec`, which does not import it), each time: nothing is decided
when this module is imported.
"""

from __future__ import annotations

import importlib.util

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
