"""What a RobustBench models entry (``robustbench: NAME``) states and what it may not: the
wrapping every RobustBench CIFAR-10 model has, filled in before validation."""

from __future__ import annotations

from typing import Any

#: What every RobustBench CIFAR-10 model takes and gives (filled in, and checked when given).
ROBUSTBENCH_WRAPPING: dict[str, Any] = {
    "input_shape": (3, 32, 32),
    "nb_classes": 10,
    "bounds": (0.0, 1.0),
    "layout": "NCHW",
    "outputs": "logits",
}
#: Fields only for RobustBench models.
ROBUSTBENCH_FIELDS = ("dataset", "threat_model")


def _show(v: Any) -> str:
    return str(list(v)) if isinstance(v, tuple | list) else repr(v)


def fill_robustbench_wrapping(data: Any) -> Any:
    """A models entry (raw mapping) with :data:`ROBUSTBENCH_WRAPPING` filled in when it is a
    RobustBench model; a given value that differs is a ``ValueError``. Others: unchanged."""
    if not isinstance(data, dict) or data.get("robustbench") is None:
        return data
    out = dict(data)
    for field, fixed in ROBUSTBENCH_WRAPPING.items():
        given = out.setdefault(field, fixed)
        if isinstance(fixed, tuple) and isinstance(given, list | tuple):
            same = list(given) == list(fixed)
        else:
            same = given == fixed
        if not same:
            raise ValueError(f"{field}: a RobustBench model's is {_show(fixed)}, got {_show(given)}")
    return out
