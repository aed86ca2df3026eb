"""Cost of events in the compiled loop: an event-stopped run against a fixed-length one.

    python benchmarks/bench_events.py [--n 1000] [--steps 1000] [--eta 0.05]

fc-tanh on n CIFAR-10 examples (½MSE, full-batch GD), all in one process on one machine:

- ``fixed``: ``train.run`` for ``steps`` steps, no events (what a chapter did before: a fixed
  step count chosen to be long enough);
- ``watching``: the same run with ``stop_when=AccuracyAbove(1.01 → never)`` — a stop event that
  never fires, so every step pays the event's bookkeeping and nothing is saved (the overhead);
- ``stopped``: ``stop_when=AccuracyAbove(threshold)``, which returns at the end of the compiled
  chunk in which it fired (``chunks`` chunks per run).

Each is compiled once before it is timed (compile excluded), then timed once (``--repeat``).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
import optax

from common import problem, write
from eoslib.engine import events, train


def timed(fn, repeat):
    fn()  # compile
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        jax.block_until_ready(result.state.params)
        times.append(time.perf_counter() - t)
    return float(np.median(times)), result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--eta", type=float, default=0.05)
    parser.add_argument("--threshold", type=float, default=0.99)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    model, objective, x, y, source = problem(args.n)
    opt = lambda hp: optax.sgd(hp["eta"])

    def run(stop):
        cfg = train.TrainConfig(steps=args.steps, chunks=args.chunks, stop_when=stop)
        return train.run(objective, opt, model, (x, y), cfg, key=jax.random.key(0),
                         hparams={"eta": args.eta}, progress=False)

    # AccuracyAbove takes thresholds in (0, 1]: a threshold no run reaches is an aux that never
    # exceeds 1; use the accuracy itself with threshold 1.0 only when it is not reached
    fixed_s, fixed = timed(lambda: run(None), args.repeat)
    acc = np.asarray(fixed.history.aux["accuracy"])
    never = events.AccuracyAbove(1.0) if acc.max() < 1.0 else None
    watching_s = None
    if never is not None:
        watching_s, _ = timed(lambda: run(never), args.repeat)
    stopped_s, stopped = timed(lambda: run(events.AccuracyAbove(args.threshold)), args.repeat)
    stop_step = int(stopped.stopped_at)
    payload = {
        "problem": f"fc-tanh, ½MSE, full-batch GD, eta={args.eta}, n={args.n} ({source})",
        "steps": args.steps, "chunks": args.chunks, "threshold": args.threshold,
        "fixed_s": fixed_s, "fixed_s_per_step": fixed_s / args.steps,
        "watching_s": watching_s,
        "watching_overhead": None if watching_s is None else watching_s / fixed_s,
        "stopped_s": stopped_s, "stop_step": stop_step,
        "steps_run_when_stopped": int(np.asarray(stopped.history.loss).shape[-1]),
        "stopped_over_fixed": stopped_s / fixed_s,
        "fixed_accuracy_at_end": float(acc[-1]),
    }
    write("events", payload)


if __name__ == "__main__":
    main()
