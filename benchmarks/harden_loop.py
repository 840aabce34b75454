"""Wall time of the hardening loop (``advharness harden``) on an experiment file, default
experiments/harden_digits.yaml (the digits quickstart models): each round and the whole
loop, from an empty results directory and an empty model cache (so trained defenses are
trained inside their round, the undefended recipes before the clock starts; ``--warm``
keeps the cache of a first, untimed pass), with
every round's time as a ratio to round 0 (the undefended pool) of the same run.

    .venv/bin/python benchmarks/harden_loop.py [--experiment FILE] [--backend pool|inline] [--warm]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experiment", default=str(ROOT / "experiments" / "harden_digits.yaml"))
    p.add_argument("--backend", default="pool", choices=["pool", "inline"])
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--warm", action="store_true", help="train the defenses in an untimed first pass")
    args = p.parse_args()
    from advharness import harden, load_experiment, load_recipe

    exp = load_experiment(args.experiment)
    exp = exp.model_copy(update={"target_success_rate": None})  # every round runs
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ADVHARNESS_CACHE"] = str(Path(tmp) / "models")
        options = {"backend": args.backend, "workers": args.workers, "progress": False}
        for m in exp.models:  # the undefended recipes are not part of the loop
            if m.recipe is not None:
                load_recipe(m.recipe, m.framework, data_path=exp.data.path)
        if args.warm:
            harden(exp, target=None, out_dir=Path(tmp) / "warm", **options)
        start = time.perf_counter()
        h = harden(exp, target=None, out_dir=Path(tmp) / "run", **options)
        total = time.perf_counter() - start
    base = h.rounds[0].wall_s
    print(
        f"{exp.name}: {len(h.rounds)} rounds, backend {args.backend}, cache {'warm' if args.warm else 'cold'}"
    )
    print(f"{'round':>5}  {'defense':<45} {'wall s':>8} {'x round 0':>9}  worst-case SR")
    for r in h.rounds:
        print(
            f"{r.index:>5}  {r.defense or '(undefended)':<45} {r.wall_s:8.1f} {r.wall_s / base:9.2f}  "
            f"{r.worst_case_success_rate:.3f}"
        )
    print(f"total {total:.1f} s ({total / base:.1f} x round 0)")


if __name__ == "__main__":
    main()
