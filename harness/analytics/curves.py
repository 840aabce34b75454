"""Security curves: robust accuracy against the perturbation budget.

One curve per setting (model, framework, library, attack, norm, targeting, threat model,
seed, and the settings that tell a grid's cells apart but ``step_size``, which often
follows eps), each starting at the clean point
``eps = 0`` where robust accuracy is the clean accuracy (Carlini et al. 2019, "On
Evaluating Adversarial Robustness", §5: report the whole curve, not one point).

* Fixed-budget attacks: one point per summary row, at its ``eps``: the row's
  ``robust_accuracy`` (each eps is a cell of its own).
* Minimum-norm attacks: from one cell's stored per-sample norms, at any radius, without
  re-running: a sample is robust at ``r`` when it was classified correctly and not
  (``success`` and ``norm <= r`` under the referee's tolerance
  :func:`~advharness.judging.referee.within_eps`, scaled by
  :func:`~advharness.judging.referee.input_scale` of the model's bounds). Without records,
  the rows at their reporting radii give the points.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from advharness.analytics.distances import step_radii
from advharness.analytics.frames import group_columns, groups, one_per_sample, present
from advharness.analytics.intervals import wilson_interval
from advharness.judging.referee import robust_accuracy_at

#: The columns of a curve point after the curve's identity.
POINT_COLUMNS = (
    "eps",
    "robust_accuracy",
    "ci_low",
    "ci_high",
    "n",
    "n_robust",
    "point",
    "cell_key",
)


def _point(ident: dict[str, Any], eps: float, ra: float, n: int, point: str, key: Any) -> dict[str, Any]:
    k = round(ra * n) if n and not np.isnan(ra) else 0
    low, high = wilson_interval(k, n)
    return {
        **ident,
        "eps": float(eps),
        "robust_accuracy": float(ra),
        "ci_low": float(low),
        "ci_high": float(high),
        "n": int(n),
        "n_robust": k,
        "point": point,
        "cell_key": key,
    }


def security_curves(
    summary: pd.DataFrame, records: pd.DataFrame | None = None, radii: Any = None
) -> pd.DataFrame:
    """Robust accuracy against eps, one curve per setting of the ``ok`` summary rows.

    Columns: the setting (model, framework, library, attack, kind, norm, targeted,
    threat_model, run_seed and the settings that vary, as in the summary), then ``eps``,
    ``robust_accuracy``, its Wilson 95 % interval ``ci_low``/``ci_high``, ``n``,
    ``n_robust``, ``point`` (``clean`` at eps 0; ``cell``: a fixed-budget row;
    ``norms``: from a minimum-norm cell's per-sample norms; ``radius``: a minimum-norm row at
    its reporting radius, when ``records`` are not given) and ``cell_key``.

    ``radii`` (minimum-norm curves from ``records``): the radii to evaluate; default: the
    exact steps of each cell's curve (0 and each distinct success norm).
    """
    ok = summary[summary["status"] == "ok"] if "status" in summary.columns else summary
    if ok.empty:
        return pd.DataFrame()
    keys = group_columns(ok, exclude=("step_size",), eps=False)
    recs = one_per_sample(records) if records is not None and len(records) else None
    rows: list[dict[str, Any]] = []
    for ident, cells in _curves(ok, keys):
        cells = cells.sort_values("eps", kind="stable", na_position="first")
        first = cells.iloc[0]
        n = int(first["n"])
        clean = float(first["n_correct"]) / n if n else float("nan")
        rows.append(_point(ident, 0.0, clean, n, "clean", None))
        if first["kind"] != "minimal":
            rows += [
                _point(ident, c["eps"], c["robust_accuracy"], int(c["n"]), "cell", c["cell_key"])
                for _, c in cells.iterrows()
                if not pd.isna(c["eps"]) and c["eps"] > 0
            ]
            continue
        own = recs[recs["cell_key"] == first["cell_key"]] if recs is not None else None
        if own is None or own.empty:
            rows += [
                _point(ident, c["eps"], c["robust_accuracy_at_eps"], int(c["n"]), "radius", c["cell_key"])
                for _, c in cells.drop_duplicates("eps").iterrows()
                if not pd.isna(c["eps"]) and c["eps"] > 0 and not pd.isna(c.get("robust_accuracy_at_eps"))
            ]  # a radius without its recomputed accuracy (no records stored) has no point
            continue
        norm = str(first["norm"])
        grid = step_radii(own.loc[own["success"].astype(bool), norm]) if radii is None else radii
        grid = [float(r) for r in grid if float(r) > 0]
        bounds = (float(first.get("bounds_low", 0.0)), float(first.get("bounds_high", 1.0)))
        curve = robust_accuracy_at(own, norm, grid, bounds)
        rows += [
            _point(ident, r, float(ra), len(own), "norms", first["cell_key"])
            for r, ra in zip(grid, curve.to_numpy(), strict=True)
        ]
    out = pd.DataFrame(rows)
    return out[[*present(out, [*keys, "step_size"]), *POINT_COLUMNS]]


def _curves(ok: pd.DataFrame, keys: list[str]) -> Iterator[tuple[dict[str, Any], pd.DataFrame]]:
    """The curves' cells: ``step_size``, often tied to eps (FGSM steps by eps), splits a
    curve only where two of its fixed-budget cells share an eps."""
    for ident, cells in groups(ok, keys):
        fixed = cells[cells["kind"] != "minimal"]
        if "step_size" in cells.columns and fixed["eps"].duplicated().any():
            for sub, part in groups(cells, ["step_size"]):
                yield {**ident, **sub}, part
        else:
            yield ident, cells
