"""Import by path: ``package.module:attr`` to the object it names, with one-line errors."""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from advharness.core.errors import HarnessError

_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def resolve_factory(path: str) -> Callable[[], Any]:
    """The callable named by ``module:attr`` (``attr`` may be dotted), imported now.

    Raises :class:`HarnessError` (a ``ValueError``) with a one-line reason.
    """
    if not _PATH.match(path):
        raise HarnessError(f"{path!r} is not an import path of the form 'package.module:function'")
    from advharness.core.quiet import native_logs_to_log

    module_name, _, attr = path.partition(":")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # should the module import TensorFlow
    try:
        with native_logs_to_log(module_name):
            module = importlib.import_module(module_name)
    except (Exception, SystemExit) as e:
        reason = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
        if not isinstance(e, ImportError):
            reason = f"{type(e).__name__}: {reason}"
        elif (
            isinstance(e, ModuleNotFoundError)
            and e.name
            and "." not in e.name
            and (Path(f"{e.name}.py").is_file() or Path(e.name).is_dir())
        ):
            reason += f" (./{e.name} is not on sys.path: set PYTHONPATH=.)"
        raise HarnessError(f"cannot import {module_name!r}: {reason}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise HarnessError(f"module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise HarnessError(f"{path!r} is not callable")
    return cast(Callable[[], Any], obj)
