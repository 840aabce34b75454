"""A black-box experiment end to end: the batched defaults vs every black-box cell per sample.

Runs the experiment (default ``experiments/blackbox_mnist.yaml``) twice per round from empty
results directories, in alternating order: as written (each black-box cell in its pair's
default ``query_mode``, batched wherever exact, see ``advharness.config.querymode``) and with
``query_mode: per-sample`` on every black-box entry (one library call per sample, as every
black-box cell ran before batched cells existed). Models are trained (or read from the cache)
before the clock starts. Reports each run's wall time, the median over rounds of the
per-sample / batched ratio within a round (paired), and the two tables side by side
(``advharness.analytics.compare.compare_results`` on the success rate, McNemar's test on the
paired samples): the cells whose success rate differs at p < 0.05, and the largest
difference of the median norm at each cell's query levels.

    .venv/bin/python benchmarks/blackbox_experiment.py [--experiment FILE] [--rounds 1] [--backend inline]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def per_sample(exp: Any) -> Any:
    """``exp`` with ``query_mode: per-sample`` on every black-box attack entry."""
    from advharness.config.catalogue import CATALOGUE

    attacks = [
        a
        if (a.threat_model or CATALOGUE[a.attack].threat_model) == "white-box"
        else a.model_copy(update={"query_mode": "per-sample"})
        for a in exp.attacks
    ]
    return exp.model_copy(update={"attacks": attacks})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experiment", default=str(ROOT / "experiments" / "blackbox_mnist.yaml"))
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--backend", default="inline", choices=["pool", "inline"])
    args = p.parse_args()
    from advharness import load_experiment, load_recipe, run_experiment
    from advharness.analytics.compare import compare_results

    exp = load_experiment(args.experiment)
    variants = {"batched": exp, "per-sample": per_sample(exp)}
    for m in exp.models:
        if m.recipe is not None:
            load_recipe(m.recipe, m.framework, data_path=exp.data.path)
    times: dict[str, list[float]] = {k: [] for k in variants}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for name in order:
                start = time.perf_counter()
                results[name] = run_experiment(
                    variants[name], out_dir=Path(tmp) / f"{name}-{r}", backend=args.backend, progress=False
                )
                times[name].append(time.perf_counter() - start)
    ratios = [s / b for s, b in zip(times["per-sample"], times["batched"], strict=True)]
    print(f"{exp.name}: {args.rounds} round(s), backend {args.backend}")
    for name, t in times.items():
        print(f"  {name:<10} wall {statistics.median(t):7.1f} s")
    print(
        f"  per-sample / batched: {statistics.median(ratios):.2f}x (rounds: {[round(x, 2) for x in ratios]})"
    )
    a, b = results["per-sample"], results["batched"]
    table = compare_results(a.summary, a.records, b.summary, b.records)
    both = table[table["in"] == "both"]
    shown = ["library", "framework", "attack", "success_rate_a", "success_rate_b", "test", "p_value"]
    black = both[both["attack"].isin([s.attack for s in exp.attacks if s.budget is not None])]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print("\nblack-box cells, success rate: A = per-sample, B = batched")
        print(black[shown].to_string(index=False))
    differs = both[both["differs"]]
    print(f"\n{len(differs)} of {len(both)} shared cells differ at p < 0.05 (McNemar, paired samples)")
    levels = [c for c in a.summary.columns if c.startswith("median_norm_at_q")]
    if levels:
        keys = ["library", "framework", "attack"]
        m = a.summary[[*keys, *levels]].merge(b.summary[[*keys, *levels]], on=keys, suffixes=("_a", "_b"))
        for level in levels:
            gap = (m[f"{level}_b"] - m[f"{level}_a"]).abs()
            if gap.notna().any():
                worst = m.loc[gap.idxmax()]
                print(
                    f"  {level}: largest |B - A| {gap.max():.3g} "
                    f"({worst['library']} {worst['framework']} {worst['attack']}: "
                    f"{worst[f'{level}_a']:.3g} per-sample, {worst[f'{level}_b']:.3g} batched)"
                )


if __name__ == "__main__":
    main()
