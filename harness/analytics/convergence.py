"""The convergence check's verdict: does doubling steps and restarts raise success?

Rule (Carlini et al. 2019, "On Evaluating Adversarial Robustness", arXiv 1902.06705,
checklist): iterations and restarts must be sufficient, doubling either must not raise the
attack's success. A convergence cell (``check == "convergence"``, planned by
``checks: [convergence]``, see :mod:`advharness.config.checks`) re-ran its base cell
(``check_of``) with 2x steps and restarts on the first ``check_samples`` samples; both are
compared on the same samples: those the model classifies correctly (in both cells). The
paper states no threshold; the one here is stated and tested: a pair is flagged
``not_converged`` when the 2x run succeeds on more than :data:`MIN_GAIN_SAMPLES` more
samples **and** its success rate is more than :data:`MIN_GAIN_RATE` higher (so one lucky
sample, or a tiny gain on a large subsample, is not a flag).

Pure DataFrame code: reads ``summary`` and ``records`` tables as the harness writes them.
"""

from __future__ import annotations

import pandas as pd

#: Flag when the 2x run succeeds on more than this many more samples ...
MIN_GAIN_SAMPLES = 1
#: ... and its success rate is more than this much higher (a fraction: 0.02 = 2 points).
MIN_GAIN_RATE = 0.02
RULE = (
    "Carlini et al. 2019 (arXiv 1902.06705) checklist: doubling steps and restarts must not "
    "raise success; flagged when the 2x run succeeds on more than {samples} more samples and "
    "by more than {rate:g} percentage points, over the same correctly classified samples"
)
#: Identity columns copied from the base cell's summary row, where present.
IDENTITY = ("model", "framework", "library", "attack", "norm", "eps", "targeted", "threat_model", "run_seed")
COLUMNS = (
    *IDENTITY,
    "base_cell_key",
    "cell_key",
    "steps_1x",
    "steps_2x",
    "restarts_1x",
    "restarts_2x",
    "samples",
    "n_attacked",
    "successes_1x",
    "successes_2x",
    "success_rate_1x",
    "success_rate_2x",
    "change",
    "n_gained",
    "n_lost",
    "not_converged",
    "rule",
)


def convergence_changes(
    summary: pd.DataFrame,
    records: pd.DataFrame,
    min_gain_samples: int = MIN_GAIN_SAMPLES,
    min_gain_rate: float = MIN_GAIN_RATE,
) -> pd.DataFrame:
    """One row per convergence cell whose base cell is in ``summary`` (both ``ok``).

    Columns (:data:`COLUMNS`): the base cell's identity, both keys, steps and restarts at 1x
    and 2x, ``samples`` (the subsample's size), ``n_attacked`` (of those, correctly
    classified in both cells), ``successes_*``/``success_rate_*`` over them, ``change``
    (2x rate - 1x rate), ``n_gained``/``n_lost`` (samples only the 2x / only the 1x run
    fooled), ``not_converged`` (the flag, see the module) and ``rule`` (the rule, as text).
    """
    rule = RULE.format(samples=min_gain_samples, rate=100 * min_gain_rate)
    if summary.empty or "check" not in summary:
        return pd.DataFrame(columns=list(COLUMNS))
    ok = summary[summary["status"] == "ok"].drop_duplicates("cell_key").set_index("cell_key", drop=False)
    twins = ok[ok["check"] == "convergence"]
    recs = records.drop_duplicates(["cell_key", "sample"]) if len(records) else records
    by_key = {str(k): g.set_index("sample") for k, g in recs.groupby("cell_key")} if len(recs) else {}
    rows = []
    for index, twin in twins.iterrows():
        key = str(index)
        base_key = twin["check_of"]
        if base_key not in ok.index or key not in by_key or base_key not in by_key:
            continue
        base = ok.loc[base_key]
        k = int(twin["check_samples"])
        r2 = by_key[key]
        r1 = by_key[base_key].reindex(r2.index)
        attacked = r1["correct"].eq(True).to_numpy() & r2["correct"].eq(True).to_numpy()
        s1 = r1["success"].eq(True).to_numpy() & attacked
        s2 = r2["success"].eq(True).to_numpy() & attacked
        n = int(attacked.sum())
        rate1 = float(s1.sum() / n) if n else float("nan")
        rate2 = float(s2.sum() / n) if n else float("nan")
        gain = int(s2.sum()) - int(s1.sum())
        rows.append(
            {
                **{c: base.get(c) for c in IDENTITY},
                "base_cell_key": base_key,
                "cell_key": key,
                "steps_1x": base.get("steps"),
                "steps_2x": twin.get("steps"),
                "restarts_1x": base.get("restarts"),
                "restarts_2x": twin.get("restarts"),
                "samples": k,
                "n_attacked": n,
                "successes_1x": int(s1.sum()),
                "successes_2x": int(s2.sum()),
                "success_rate_1x": rate1,
                "success_rate_2x": rate2,
                "change": rate2 - rate1,
                "n_gained": int((s2 & ~s1).sum()),
                "n_lost": int((s1 & ~s2).sum()),
                "not_converged": bool(n and gain > min_gain_samples and rate2 - rate1 > min_gain_rate),
                "rule": rule,
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))
