"""Import by path: ``package.module:attr`` to the object it names, with one-line errors."""

from __future__ import annotations

import os
import pkgutil
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from advharness.core.errors import HarnessError, first_line, one_line

_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def resolve_factory(path: str) -> Callable[[], Any]:
    """The callable named by ``module:attr`` (``attr`` may be dotted), imported now
    (:func:`pkgutil.resolve_name`).

    Raises :class:`HarnessError` (a ``ValueError``) with a one-line reason.
    """
    if not _PATH.match(path):
        raise HarnessError(f"{path!r} is not an import path of the form 'package.module:function'")
    from advharness.core.quiet import native_logs_to_log

    module_name, _, attr = path.partition(":")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # should the module import TensorFlow
    try:
        with native_logs_to_log(module_name):
            obj = pkgutil.resolve_name(path)
    except AttributeError as e:
        if module_name not in sys.modules:  # raised while importing the module
            raise _import_error(module_name, e) from None
        raise HarnessError(f"module {module_name!r} has no attribute {attr!r}") from None
    except (Exception, SystemExit) as e:
        raise _import_error(module_name, e) from None
    if not callable(obj):
        raise HarnessError(f"{path!r} is not callable")
    return cast(Callable[[], Any], obj)


def _import_error(module_name: str, e: BaseException) -> HarnessError:
    """``cannot import 'module': reason``, with a hint for a module in the working directory."""
    if not isinstance(e, ImportError):
        reason = one_line(e)
    else:
        reason = first_line(str(e)) or type(e).__name__
        if (
            isinstance(e, ModuleNotFoundError)
            and e.name
            and "." not in e.name
            and (Path(f"{e.name}.py").is_file() or Path(e.name).is_dir())
        ):
            reason += f" (./{e.name} is not on sys.path: set PYTHONPATH=.)"
    return HarnessError(f"cannot import {module_name!r}: {reason}")
