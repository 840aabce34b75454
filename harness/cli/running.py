"""The commands that run cells: ``advharness run`` and ``advharness harden``."""

from __future__ import annotations

import argparse

from advharness.cli.terminal import print_checks, print_table, run_checks, wide


def cmd_run(args: argparse.Namespace) -> int:
    from advharness.config.experiment import load_experiment
    from advharness.execution.orchestrate import plan_table, run_experiment

    exp = load_experiment(args.experiment, args.overrides, quick=args.quick)
    backend = "ray" if args.ray_address else args.backend
    if args.dry_run:
        cells = plan_table(exp, args.results_dir, args.out, args.retry_failed)
        with wide():
            print(cells.to_string(index=False))
        todo = int((cells["will_run"]).sum())
        print(f"{len(cells)} cells, {todo} to run on backend {backend!r} (dry run: nothing ran)")
        return 0
    result = run_experiment(
        exp,
        args.results_dir,
        out_dir=args.out,
        progress=not args.no_progress,
        backend=backend,
        workers=args.workers,
        ray_address=args.ray_address,
        retry_failed=args.retry_failed,
        command=args.command_line,
        overrides=args.overrides,
    )
    checks = run_checks(result)
    print_table(result.summary, "table", f"{exp.name}: head-to-head", per_seed=False, checks=checks)
    print_checks(checks)
    if exp.expect:  # stored as expectations.csv by the run
        from advharness.reporting.compare import expectations_table, expectations_text

        print(expectations_text(expectations_table(result, exp.expect), exp.name, exp.deviations))
    print(f"results: {result.path}")
    return 0


def cmd_harden(args: argparse.Namespace) -> int:
    from advharness.config.experiment import load_experiment
    from advharness.execution.harden import harden, rounds_table

    exp = load_experiment(args.experiment, args.overrides, quick=args.quick)
    h = harden(
        exp,
        target=args.target,
        results_root=args.results_dir,
        out_dir=args.out,
        progress=not args.no_progress,
        backend="ray" if args.ray_address else args.backend,
        workers=args.workers,
        ray_address=args.ray_address,
        retry_failed=args.retry_failed,
        command=args.command_line,
        overrides=args.overrides,
    )
    with wide():
        print(f"{exp.name}: hardening rounds")
        print(rounds_table(h).to_string(index=False))
        print(f"\n{exp.name}: before / after (success rate within eps [95% interval])")
        print(h.table.to_string())
    checks = run_checks(h.result)
    print_checks(checks)
    if exp.expect:  # over every round's cells, stored as expectations.csv by the loop
        from advharness.reporting.compare import expectations_text

        print(expectations_text(h.expectations, exp.name, exp.deviations))
    print(h.verdict())
    print(f"results: {h.result.path}")
    return 0
