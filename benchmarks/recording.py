"""Cost of recording a white-box attack's path (best seen per sample, loss traces).

Same network (the ``mnist_cnn`` recipe), same batch (256 MNIST test images), PGD-40 (L-inf,
eps 0.3, absolute step 0.01, no random start): the whole harness cell (attack + referee)
with path recording **on** (the default) and **off** (a second wrapper around an identical
network with ``record_path = False``, so not even the hook is built; on TF the libraries'
compiled functions are then traced without it).

After one warm-up of each (estimators built, tf.functions traced, the originals'
separations computed), each of ``--runs`` rounds runs both, in alternating order; a ratio is
the median over rounds of the ratio on/off within a round, with its interquartile range.

Also, less noisy: the recorder's own time per forward pass of 256 PGD-like rows against one
eager forward+backward pass of the model on them (medians of ``10 x --runs`` alternating
timings).

    .venv/bin/python benchmarks/recording.py --runs 7
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from typing import Any

import numpy as np

from advharness.cells.cell import CellInputs
from advharness.cells.dispatch import run_cell
from advharness.config.spec import AttackSpec
from advharness.models.layout import to_layout
from advharness.zoo.data import load_dataset
from advharness.zoo.recipes import load_recipe

log = logging.getLogger("benchmarks.recording")

SPEC = AttackSpec(attack="pgd", eps=0.3, steps=40, step_size=0.01).resolve()


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q = np.percentile(values, [25, 50, 75])
    return float(q[0]), float(q[1]), float(q[2])


def bench(framework: str, runs: int, batch: int, libraries: list[str]) -> list[dict[str, Any]]:
    on = load_recipe("mnist_cnn", framework)
    off = load_recipe("mnist_cnn", framework)
    off.record_path = False
    ds = load_dataset("mnist", "test", n_samples=batch)
    x, y = to_layout(ds.x, on), ds.y
    clean = on.predict(x)
    rows = []
    for lib in libraries:
        cells = {
            name: (lambda m=m, lib=lib: run_cell(CellInputs(m, x, y, clean, None), SPEC, lib, 0, batch))
            for name, m in (("on", on), ("off", off))
        }
        first = {k: f() for k, f in cells.items()}  # warm-up
        assert first["on"].summary["status"] == first["off"].summary["status"] == "ok", first["on"].summary
        assert "n_silent_success" in first["on"].summary and "n_silent_success" not in first["off"].summary
        t: dict[str, list[float]] = {"on": [], "off": []}
        for r in range(runs):
            for k in ("on", "off") if r % 2 == 0 else ("off", "on"):
                t0 = time.perf_counter()
                cells[k]()
                t[k].append(time.perf_counter() - t0)
        ratios = [a / b for a, b in zip(t["on"], t["off"], strict=True)]
        lo, med, hi = quartiles(ratios)
        rows.append(
            {
                "framework": framework,
                "library": lib,
                "off_s": statistics.median(t["off"]),
                "on_s": statistics.median(t["on"]),
                "on/off": med,
                "iqr": (lo, hi),
            }
        )
        log.info("%s", json.dumps(rows[-1]))
    return rows


def pass_cost(framework: str, runs: int, batch: int) -> dict[str, Any]:
    """The recorder's own time per forward pass (PGD-like rows: the originals moved by
    eps x sign of noise, clipped) against one eager forward+backward pass of the model on
    the same rows (what a PGD step costs at least), medians of alternating timings."""
    from advharness.cells.recording import make_recorder

    model = load_recipe("mnist_cnn", framework)
    ds = load_dataset("mnist", "test", n_samples=batch)
    x, y = to_layout(ds.x, model), ds.y
    clean = model.predict(x)
    rng = np.random.default_rng(0)
    rows = np.clip(x + SPEC.eps * np.sign(rng.normal(size=x.shape)), 0, 1).astype(np.float32)
    t = model.to_tensor(rows)
    rec = make_recorder(model, x, y, None, clean, SPEC)
    logits = model.counted(t)
    rec.observe(t, logits)  # first pass: the originals' separations
    if framework == "torch":
        import torch

        yt = torch.from_numpy(y)

        def step() -> None:
            xv = t.clone().requires_grad_(True)
            torch.autograd.grad(torch.nn.functional.cross_entropy(model.counted(xv), yt), xv)

    else:
        import tensorflow as tf

        yt = tf.convert_to_tensor(y)

        def step() -> None:
            with tf.GradientTape() as tape:
                tape.watch(t)
                loss = tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(labels=yt, logits=model.counted(t))
                )
            tape.gradient(loss, t)

    times: dict[str, list[float]] = {"step": [], "observe": []}
    for _ in range(runs):
        for k, f in (("step", step), ("observe", lambda: rec.observe(t, logits))):
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    row = {
        "framework": framework,
        "step_ms": 1e3 * med["step"],
        "observe_ms": 1e3 * med["observe"],
        "(step+observe)/step": (med["step"] + med["observe"]) / med["step"],
    }
    log.info("%s", json.dumps(row))
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--framework", nargs="+", default=["torch", "tensorflow"])
    p.add_argument("--libraries", nargs="+", default=["art", "foolbox", "cleverhans"])
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # the libraries' INFO: off
    log.setLevel(logging.INFO)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    passes = [pass_cost(fw, 10 * args.runs, args.batch) for fw in args.framework]
    rows = [r for fw in args.framework for r in bench(fw, args.runs, args.batch, args.libraries)]
    lines = [
        "| framework | library | cell, recording off s | cell, recording on s | on / off (IQR) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['framework']} | {r['library']} | {r['off_s']:.3f} | {r['on_s']:.3f} | "
            f"{r['on/off']:.3f} ({r['iqr'][0]:.3f}-{r['iqr'][1]:.3f}) |"
        )
    lines += [
        "",
        "| framework | forward+backward pass ms | recorder per pass ms | (pass + recorder) / pass |",
        "|---|---|---|---|",
    ]
    for r in passes:
        ratio = r["(step+observe)/step"]
        lines.append(f"| {r['framework']} | {r['step_ms']:.2f} | {r['observe_ms']:.2f} | {ratio:.3f} |")
    log.info("\n%s", "\n".join(lines))


if __name__ == "__main__":
    main()
