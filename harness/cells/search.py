"""Per-sample eps search for fixed-budget attacks (``search: {eps: {start, max, steps}}``).

As AttackBench does: per sample, start at ``start`` and double until the refereed attack
succeeds or ``max`` has been tried (the last doubling is capped at ``max``), then bisect
``steps`` times between the last failing and the first succeeding eps. A sample's
``search_eps`` is the smallest eps at which the refereed attack succeeded (inf: not even at
``max``; 0: misclassified clean, not attacked) and ``search_eps_low`` the largest at which it
failed (0 when it succeeded at ``start``): the final bracket is
``(search_eps_low, search_eps]``.

Libraries take one scalar eps, so each round groups the samples by their current eps and
runs the cell's own path (:func:`advharness.cells.cell.attack_batch`: the library with its
restarts, then the referee) once per distinct eps on those samples. Time and queries are
totals over every call. Success need not be monotone in eps (a bisection assumes it is):
``search_eps`` is a refereed success either way, an upper bound on the attack's minimal
distance for that sample, while a failure at ``search_eps_low`` proves nothing about
smaller radii.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from advharness.adapters.base import LibraryCall
from advharness.cells.cell import CellInputs, CellResult, attack_batch
from advharness.config.spec import ResolvedSpec, default_step_size
from advharness.judging.referee import judge, summarize


@dataclass
class _State:
    """One search in progress: per-sample brackets and the rows kept, and the totals."""

    lo: np.ndarray
    hi: np.ndarray
    x_best: np.ndarray
    queries: np.ndarray
    parts: list[pd.DataFrame] = field(default_factory=list)
    time_s: float = 0.0
    forward: float = 0.0
    backward: float = 0.0
    calls: int = 0
    nonfinite: int = 0
    first_call: str | None = None


def run_search(
    adapter: Any,
    inputs: CellInputs,
    spec: ResolvedSpec,
    seed: int,
    batch_size: int,
    base: dict[str, Any],
    on_call: Callable[[LibraryCall], None] | None = None,
) -> CellResult:
    """Search each sample's smallest successful eps with ``spec``'s attack (see the module)."""
    search = spec.search
    assert search is not None
    n = len(inputs.x)
    correct = inputs.clean_pred == inputs.y
    st = _State(
        lo=np.zeros(n),
        hi=np.full(n, np.inf),
        x_best=np.array(inputs.x, dtype=np.float32, copy=True),
        queries=np.zeros(n, dtype=np.int64),
    )
    clean = judge(  # every sample at its clean input: what misclassified samples keep
        x=inputs.x,
        y=inputs.y,
        x_adv=inputs.x,
        clean_pred=inputs.clean_pred,
        adv_pred=inputs.clean_pred,
        bounds=inputs.model.bounds,
        norm=spec.norm,
        eps=None,
        enforce_eps=False,
        targets=inputs.targets,
    ).records
    st.parts.append(clean)
    columns = list(clean.columns)

    def attempt(index: np.ndarray, eps: np.ndarray) -> None:
        """Attack samples ``index``, each at its ``eps``: one call per distinct eps."""
        for e in np.unique(eps):
            sub = index[eps == e]
            res = attack_batch(
                adapter, inputs.take(sub), spec.at_eps(float(e)), seed, batch_size, base, on_call
            )
            assert res.records is not None and res.x_adv is not None
            rec = res.records
            won = rec["success"].to_numpy()
            keep = won | ~np.isfinite(st.hi[sub])  # a success, or the newest failure so far
            st.hi[sub[won]] = e
            st.lo[sub[~won]] = e
            st.x_best[sub[keep]] = res.x_adv[keep]
            st.parts.append(rec.loc[keep, columns].assign(sample=sub[keep]))
            if "queries" in rec:
                st.queries[sub] += rec["queries"].to_numpy()
            k = len(sub)
            st.time_s += float(res.summary["time_s"])
            st.forward += float(res.summary["forward_per_sample"]) * k
            st.backward += float(res.summary["backward_per_sample"]) * k
            st.nonfinite += int(res.summary["n_nonfinite"])
            st.calls += 1
            if st.first_call is None:
                st.first_call = str(res.summary["library_call"])

    eps, todo = search.start, np.flatnonzero(correct)
    while len(todo):  # doubling, capped at max
        attempt(todo, np.full(len(todo), eps))
        todo = todo[~np.isfinite(st.hi[todo])]
        if eps >= search.max:
            break
        eps = min(2.0 * eps, search.max)
    for _ in range(search.steps):  # bisection of (lo, hi]
        todo = np.flatnonzero(correct & np.isfinite(st.hi))
        if not len(todo):
            break
        attempt(todo, (st.lo[todo] + st.hi[todo]) / 2.0)

    records = (
        pd.concat(st.parts, ignore_index=True)
        .drop_duplicates("sample", keep="last")
        .sort_values("sample")
        .reset_index(drop=True)
    )
    records["search_eps"] = np.where(correct, st.hi, 0.0)
    records["search_eps_low"] = np.where(correct, st.lo, 0.0)
    return CellResult(_summary(records, st, spec, base, correct), _with_queries(records, st, spec), st.x_best)


def _with_queries(records: pd.DataFrame, st: _State, spec: ResolvedSpec) -> pd.DataFrame:
    """Black-box cells: each sample's queries, summed over every call of the search."""
    return records.assign(queries=st.queries) if spec.threat_model != "white-box" else records


def _summary(
    records: pd.DataFrame, st: _State, spec: ResolvedSpec, base: dict[str, Any], correct: np.ndarray
) -> dict[str, Any]:
    search = spec.search
    assert search is not None
    n = max(len(records), 1)
    distances = st.hi[correct]
    out: dict[str, Any] = {
        **base,
        "status": "ok",
        "reason": "",
        **summarize(records, spec.norm),
        "time_s": st.time_s,
        "forward_per_sample": st.forward / n,
        "backward_per_sample": st.backward / n,
        "queries_per_sample": (st.forward + st.backward) / n,
        "restarts": spec.restarts,
        "library_call": _call_json(st, spec),
        "median_search_eps": float(np.median(distances)) if len(distances) else float("nan"),
        "search_calls": st.calls,
    }
    if spec.threat_model != "white-box":
        q = st.queries[correct]
        out.update(
            budget=spec.budget,
            queries_mean=float(q.mean()) if len(q) else float("nan"),
            queries_median=float(np.median(q)) if len(q) else float("nan"),
            queries_max=int(q.max()) if len(q) else 0,
        )
    if st.nonfinite:
        out.update(
            status="error",
            reason=(
                f"the library returned NaN/inf {st.nonfinite} times during the eps search "
                "(refereed as failures)"
            ),
        )
    return out


def _call_json(st: _State, spec: ResolvedSpec) -> str:
    """The first library call (at ``start``), with a note on the search around it."""
    search = spec.search
    assert search is not None
    if st.first_call is None:
        call = LibraryCall(
            "(not called)", {}, notes=["no sample was classified correctly: nothing to search"]
        )
        return call.to_json()
    record = json.loads(st.first_call)
    if spec.step_size is not None:
        step = "; step_size as given, at every eps"
    elif default_step_size(spec.attack, search.start, spec.steps) is not None:
        step = "; step_size by its default rule at each eps"
    else:
        step = ""
    record["notes"].append(
        f"eps search {search.to_json()}: doubling from {search.start:g} (capped at {search.max:g}), "
        f"then {search.steps} bisection steps; {st.calls} library calls, one per distinct eps "
        f"per round on the samples at that eps (shown: the first){step}; time and queries "
        "are totals over all calls"
        + (f"; the budget ({spec.budget}) applies to each call" if spec.budget else "")
    )
    return json.dumps(record, sort_keys=True)
