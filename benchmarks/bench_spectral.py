"""Spectral engine benchmarks (issue: HVP cost, warm vs cold probes, top-10 vs scipy / power iteration).

    python benchmarks/bench_spectral.py [--n 5000] [--eos-n 1000] [--eos-steps 600]

1. One HVP against one gradient (fc-tanh, ½MSE, n examples): target ≤ 2×.
2. Top-10 eigenpairs, cold, ``tol=1e-6``: eoslib block Lanczos against
   ``scipy.sparse.linalg.eigsh`` driving the same jitted HVP, and the per-HVP cost against the
   PyTorch double-backprop power iteration of ../shared/bench (run that in the same session).
3. Warm against cold λ₁ probes along an edge-of-stability GD run (real CIFAR-10 subset,
   η = 2/100): HVPs each needs at residual tolerance 1e-3·λ, and the eigenvalue error each
   reaches against a tight reference (target: median ≤ 10 warm HVPs at relative error ≤ 1e-6).
"""

from __future__ import annotations

import argparse
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.sparse.linalg as sla
from jax.flatten_util import ravel_pytree

from common import problem, timeit, write
from eoslib.engine import hessian, train


class WarmVsCold(NamedTuple):
    """The benchmark's probe record: a cold solve's HVPs and value, and a tight reference."""

    cold_matvecs: jax.Array
    cold_value: jax.Array
    ref_value: jax.Array
    ref_converged: jax.Array


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--eos-n", type=int, default=1000)
    parser.add_argument("--eos-steps", type=int, default=600)
    parser.add_argument("--probe-every", type=int, default=20)
    args = parser.parse_args()
    out = {"n": args.n}

    # 1. HVP vs gradient ---------------------------------------------------------------------
    model, objective, x, y, source = problem(args.n, real=False)
    loss = lambda p, x, y: objective(p, x, y, {})[0]
    flat, unravel = ravel_pytree(model)
    grad = jax.jit(lambda p, x, y: jax.grad(loss)(p, x, y))
    with jax.default_matmul_precision("highest"):
        hvp = jax.jit(lambda p, v, x, y: hessian.flat_hvp(lambda q: loss(q, x, y), p)[0](v))
        v = jax.random.normal(jax.random.key(1), flat.shape)
        t_grad = timeit(grad, model, x, y, repeat=10)
        t_hvp = timeit(hvp, model, v, x, y, repeat=10)
    out["hvp_ms"], out["grad_ms"], out["hvp_over_grad"] = 1e3 * t_hvp, 1e3 * t_grad, t_hvp / t_grad
    out["power20_ms_eoslib"] = 20e3 * t_hvp

    # 2. top-10: eoslib vs scipy eigsh on the same HVP ---------------------------------------
    eig = jax.jit(lambda p, v0, x, y: hessian.eigsh(lambda q: loss(q, x, y), p, 10, v0=v0, tol=1e-6,
                                                      max_restarts=20))
    res = eig(model, v, x, y)
    t_eoslib = timeit(eig, model, v, x, y, repeat=3)
    n = flat.size
    count = {"matvecs": 0}

    def scipy_matvec(u):
        count["matvecs"] += 1
        return np.asarray(hvp(model, jnp.asarray(u, flat.dtype), x, y), dtype=np.float64)

    op = sla.LinearOperator((n, n), matvec=scipy_matvec, dtype=np.float64)
    t = time.perf_counter()
    scipy_vals = sla.eigsh(op, k=10, which="LA", tol=1e-6, v0=np.asarray(v, np.float64))[0][::-1]
    t_scipy = time.perf_counter() - t
    out["top10"] = dict(eoslib_s=t_eoslib, eoslib_matvecs=int(res.matvecs), eoslib_converged=bool(res.converged),
                        scipy_s=t_scipy, scipy_matvecs=count["matvecs"], scipy_over_eoslib=t_scipy / t_eoslib,
                        max_rel_diff=float(np.max(np.abs(np.asarray(res.values) - scipy_vals) / np.abs(scipy_vals))),
                        eoslib_values=np.asarray(res.values).tolist(), scipy_values=scipy_vals.tolist())

    # 3. warm vs cold along an EoS run --------------------------------------------------------
    model, objective, x, y, source = problem(args.eos_n, real=True)
    cfg = train.TrainConfig(steps=args.eos_steps, probe_every=args.probe_every, chunks=1,
                            eig_tol=1e-3, eig_num_iters=20)

    def probe_fn(params, opt_state, eigpairs, hp, data):
        # the in-loop probe is the warm one; here: a cold probe and a tight reference, same params
        lfn = lambda q: objective(q, x, y, hp)[0]
        cold = hessian.eigsh(lfn, params, 1, key=jax.random.key(7), tol=1e-3, num_iters=20, max_restarts=2)
        ref = hessian.eigsh(lfn, params, 1, v0=eigpairs.vectors, tol=1e-6, num_iters=60, max_restarts=10)
        return WarmVsCold(cold.matvecs, cold.values[0], ref.values[0], ref.converged)

    result = train.run(objective, lambda hp: optax.sgd(0.02), model, (x, y), cfg, key=jax.random.key(3),
                       probe_fn=probe_fn, progress=False)
    h = result.history
    ref = h.extra.ref_value
    warm_rel = np.abs(h.sharpness - ref) / np.abs(ref)
    cold_rel = np.abs(h.extra.cold_value - ref) / np.abs(ref)
    at_edge = h.sharpness >= 0.9 * 2 / 0.02
    sel = slice(1, None)  # the first probe has nothing to warm-start from
    out["eos_probes"] = dict(
        data=source, n=args.eos_n, steps=args.eos_steps, probe_every=args.probe_every,
        probes=int(h.sharpness.size), probes_at_edge=int(at_edge[sel].sum()),
        warm_hvps_median=float(np.median(h.matvecs[sel])), cold_hvps_median=float(np.median(h.extra.cold_matvecs[sel])),
        warm_hvps_median_at_edge=float(np.median(h.matvecs[sel][at_edge[sel]])) if at_edge[sel].any() else None,
        cold_hvps_median_at_edge=float(np.median(h.extra.cold_matvecs[sel][at_edge[sel]])) if at_edge[sel].any() else None,
        warm_rel_err_median=float(np.median(warm_rel[sel])), cold_rel_err_median=float(np.median(cold_rel[sel])),
        warm_rel_err_max=float(np.max(warm_rel[sel])), reference_converged=float(np.mean(h.extra.ref_converged)),
        sharpness_final=float(h.sharpness[-1]))
    write("spectral", out)


if __name__ == "__main__":
    main()
