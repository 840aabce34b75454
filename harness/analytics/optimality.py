"""Attack optimality, as AttackBench defines it (Cinà et al. 2024, "AttackBench: Evaluating
Gradient-based Attacks for Adversarial Examples"; code: pralab/AttackBench, ``analysis/``).

For one model and threat model (norm, targeting), every attack run gives each sample a
distance (:func:`advharness.analytics.distances.per_sample_distances`: 0 if misclassified,
``+inf`` if not broken). The *empirical best* distance of a sample is the smallest over every
run on that model and sample (all attacks, libraries, seeds). A set of distances ``d`` has
the robust-accuracy curve ``RA_d(r) = #{i: d_i > r} / n``, a step function.

With ``R`` the largest finite best distance and ``c`` the clean accuracy (the share of
samples whose best distance is positive), the *local optimality* of an attack on that model
is ``LO = 1 - (A - A*) / (c·R - A*)``, where ``A = ∫_0^R RA_d(r) dr`` is the area under the
attack's curve and ``A*`` the same for the best distances: the share of the area between
"no attack" (the flat line at ``c``) and the empirical best that the attack's curve
covers. ``LO = 1`` for an attack that matches the best on every sample; ``0`` for one that
breaks nothing within ``R``. The integrals are exact (AttackBench uses the trapezoid rule on
the curve's points): ``∫_0^R 1[d_i > r] dr = min(d_i, R)``, so ``A = mean_i min(d_i, R)``.
The *global optimality* of an attack is the mean of its local optimality over models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from advharness.analytics.distances import SAMPLE_COLUMNS
from advharness.analytics.frames import groups, present

#: The default scope of a best distance: one model, one threat model.
BEST_BY = ("model", "norm", "targeted")


def _sample_keys(distances: pd.DataFrame, by: Sequence[str]) -> list[str]:
    """``by``, the data identity when known, and the sample (and its target)."""
    return present(distances, [*by, "data_sha256", "sample", "target"])


def best_distances(distances: pd.DataFrame, by: Sequence[str] = BEST_BY) -> pd.DataFrame:
    """Per sample (``by``, ``data_sha256`` when present, ``sample``, ``target``), the
    smallest distance over every run in ``distances``: ``best_distance``, ``n_runs`` and
    ``best_cell_key`` (the first run that reached it)."""
    keys = _sample_keys(distances, by)
    d = distances.reset_index(drop=True)
    order = d.sort_values("distance", kind="stable").drop_duplicates(keys)
    out = order[[*keys, "distance", *present(order, ["cell_key"])]].rename(
        columns={"distance": "best_distance", "cell_key": "best_cell_key"}
    )
    counts = d.groupby(keys, dropna=False, sort=False).size().rename("n_runs").reset_index()
    return out.merge(counts, on=keys, how="left").sort_values(keys, kind="stable").reset_index(drop=True)


def step_area(distances: Any, r_max: float) -> float:
    """The exact area under the robust-accuracy step curve ``#{i: d_i > r} / n`` over
    ``[0, r_max]``: ``mean_i min(d_i, r_max)`` (NaN for no distances)."""
    d = np.asarray(distances, dtype=np.float64)
    return float(np.minimum(d, r_max).mean()) if len(d) else float("nan")


def optimality_of(distances: Any, best: Any) -> dict[str, float]:
    """Local optimality of per-sample ``distances`` against the per-sample ``best`` (same
    samples, same order; see the module docstring): ``local_optimality``, ``area``,
    ``best_area``, ``max_distance`` (``R``) and ``clean_accuracy`` (``c``). NaN when the best
    breaks nothing at a positive distance (``c·R = A*``: nothing to compare)."""
    d = np.asarray(distances, dtype=np.float64)
    b = np.asarray(best, dtype=np.float64)
    finite = b[np.isfinite(b)]
    r_max = float(finite.max()) if len(finite) else float("nan")
    clean = float((b > 0).mean()) if len(b) else float("nan")
    area, best_area = step_area(d, r_max), step_area(b, r_max)
    span = clean * r_max - best_area
    lo = 1.0 - (area - best_area) / span if span > 0 else float("nan")
    return {
        "local_optimality": lo,
        "area": area,
        "best_area": best_area,
        "max_distance": r_max,
        "clean_accuracy": clean,
    }


def local_optimality(distances: pd.DataFrame, by: Sequence[str] = BEST_BY) -> pd.DataFrame:
    """Per cell of a distances table, its local optimality against the empirical best of
    its (``by``) group (:func:`best_distances`, over every run in ``distances``): the
    cell's identity, ``n``, and the columns of :func:`optimality_of`. The best is as good
    as the runs given: pass every attack run on the model."""
    keys = _sample_keys(distances, by)
    best = best_distances(distances, by)
    merged = distances.merge(best[[*keys, "best_distance"]], on=keys, how="left")
    ident = [c for c in distances.columns if c not in SAMPLE_COLUMNS]
    rows = []
    for _, cell in groups(merged, present(merged, ["cell_key"])):
        first = cell.iloc[0]
        result = optimality_of(cell["distance"], cell["best_distance"])
        rows.append({**{c: first[c] for c in ident}, "n": len(cell), **result})
    return pd.DataFrame(rows)


#: The default identity of an attack implementation across models.
ATTACK_BY = ("attack", "library", "norm", "targeted")


def global_optimality(local: pd.DataFrame, by: Sequence[str] = ATTACK_BY) -> pd.DataFrame:
    """Mean local optimality of each attack implementation (``by``) over models: each
    model's cells (several seeds or frameworks' runs) are averaged first, so every model
    weighs the same. Columns: ``by``, ``global_optimality``, ``min_local``, ``max_local``,
    ``n_models``, ``n_cells``; NaN local values are left out."""
    keys = present(local, by)
    rows = []
    for ident, cells in groups(local, keys):
        valid = cells[cells["local_optimality"].notna()]
        per_model = valid.groupby("model", sort=False)["local_optimality"].mean()
        rows.append(
            {
                **ident,
                "global_optimality": float(per_model.mean()) if len(per_model) else float("nan"),
                "min_local": float(per_model.min()) if len(per_model) else float("nan"),
                "max_local": float(per_model.max()) if len(per_model) else float("nan"),
                "n_models": len(per_model),
                "n_cells": len(valid),
            }
        )
    return pd.DataFrame(rows)
