"""Scalar field types for specs and experiment files: a boolean or a string is not a number.

Pydantic's lax mode would run ``eps: true`` as 1.0 and ``eps: "0.1"`` as 0.1, and report a
NaN ``eps`` as "must be >= 0". These types refuse booleans and strings where a number is
expected (and anything but ``true``/``false`` where a boolean is), refuse NaN and infinity,
and accept NumPy scalars from the Python API (``np.float32(0.1)``, ``np.int64(10)``).
An ``int`` is fine where a float is expected.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import AllowInfNan, BeforeValidator


def _number(v: Any) -> Any:
    if isinstance(v, bool | np.bool_):
        raise ValueError(f"must be a number, got the boolean {bool(v)!r}")
    if isinstance(v, str | bytes):
        raise ValueError(f"must be a number, got the string {v!r}")
    if isinstance(v, np.integer | np.floating):
        return v.item()
    return v


def _bool(v: Any) -> Any:
    if isinstance(v, bool | np.bool_):
        return bool(v)
    raise ValueError(f"must be true or false, got {v!r}")


def scalar(v: Any) -> Any:
    """A NumPy scalar as the Python value it holds; anything else unchanged."""
    return v.item() if isinstance(v, np.generic) else v


#: A finite float (an int is accepted), never a boolean or string.
Float = Annotated[float, BeforeValidator(_number), AllowInfNan(False)]
#: An int, never a boolean, string or fractional float.
Int = Annotated[int, BeforeValidator(_number)]
#: ``true`` or ``false`` only (not 1, "yes" or "true").
Bool = Annotated[bool, BeforeValidator(_bool)]
