"""Training engine benchmarks: cost of recording and probing, and of sweeps.

    python benchmarks/bench_train.py [--n 5000] [--steps 200]

For fc-tanh on n CIFAR-10 examples (½MSE, full-batch GD, η = 0.01), time per step of

- a bare jitted ``lax.scan`` of GD steps that records nothing (the floor);
- ``eoslib.engine.train.run`` recording loss / accuracy / norms every step (target ≤ 1.2× the floor);
- the same with a warm-started sharpness probe every 20 steps (target ≤ 1.5×);
- a vmapped sweep of 8 learning rates against 8 sequential runs (target ≥ 3× throughput on GPU).

Compare with the PyTorch eager loop of ../shared/bench/torch_peer.py run in the same session.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import optax

from common import problem, write
from eoslib.engine import train


def per_step(fn, steps):
    """Seconds per step of ``fn()`` (which runs ``steps`` steps); compile excluded."""
    jax.block_until_ready(fn())
    t = time.perf_counter()
    jax.block_until_ready(fn())
    return (time.perf_counter() - t) / steps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--sweep", type=int, default=8)
    args = parser.parse_args()
    model, objective, x, y, source = problem(args.n)
    steps, eta = args.steps, 0.01
    opt = optax.sgd(eta)

    @jax.jit
    def bare(params, x, y):
        def step(carry, _):
            p, s = carry
            g = jax.grad(lambda q: objective(q, x, y, {})[0])(p)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), None
        return jax.lax.scan(step, (params, opt.init(params)), None, length=steps)[0][0]

    t_bare = per_step(lambda: bare(model, x, y), steps)

    fixed = lambda hp: opt

    def eoslib_run(probe_every, hparams=None, make=fixed, reortho="full"):
        cfg = train.TrainConfig(steps=steps, probe_every=probe_every, chunks=1, eig_reortho=reortho)
        return lambda: train.run(objective, make, model, (x, y), cfg, key=jax.random.key(0),
                                 hparams=hparams, progress=False).state.params

    t_record = per_step(eoslib_run(0), steps)
    t_probe = per_step(eoslib_run(20), steps)
    t_probe_mpk = per_step(eoslib_run(20, reortho="mpk"), steps)

    etas = jnp.linspace(0.005, 0.02, args.sweep)
    by_eta = lambda hp: optax.sgd(hp["eta"])
    t_sweep = per_step(eoslib_run(0, {"eta": etas}, by_eta), steps)
    t_seq = sum(per_step(eoslib_run(0, {"eta": e}, by_eta), steps) for e in etas)
    write("train", dict(
        n=args.n, steps=steps, data=source,
        bare_scan_ms=1e3 * t_bare, eoslib_record_ms=1e3 * t_record, eoslib_probe20_ms=1e3 * t_probe,
        eoslib_probe20_mpk_ms=1e3 * t_probe_mpk,
        record_over_bare=t_record / t_bare, probe20_over_bare=t_probe / t_bare,
        probe20_mpk_over_bare=t_probe_mpk / t_bare,
        sweep8_ms_per_step=1e3 * t_sweep, sequential8_ms_per_step=1e3 * t_seq,
        sweep_throughput_gain=t_seq / t_sweep))


if __name__ == "__main__":
    main()
