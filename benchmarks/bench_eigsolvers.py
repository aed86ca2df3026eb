"""Cold and warm eigensolves on a network Hessian: thick-restart Lanczos, block Lanczos, ARPACK.

    python benchmarks/bench_eigsolvers.py [--n 2000] [--eos-n 1000] [--eos-steps 400]

1. Cold top-1 and top-10 of the fc-tanh ½MSE Hessian (n examples) at relative tolerance 1e-6:
   :func:`eoslib.engine.linalg.thick_restart_eigsh` and the block :func:`eoslib.engine.linalg.eigsh`
   against ``scipy.sparse.linalg.eigsh`` (ARPACK) driving the *same* jitted HVP, in the same process:
   wall time, HVPs, and the largest relative difference of the eigenvalues (targets: thick ≤ 1.0×
   scipy's time, same accuracy).
2. Warm λ₁ probes along an edge-of-stability GD run (CIFAR-10 subset, η = 2/100, a probe every 20
   steps at residual tolerance 1e-3·λ): HVPs per probe of the block method (what ``train.run`` does)
   and of thick restart, each warm-started from its own previous eigenvector (target: median ≤ 5 at
   the edge).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse.linalg as sla
from jax.flatten_util import ravel_pytree

from common import problem, timeit, write
from eoslib.engine import hessian, linalg


def cold(model, loss, x, y, k, repeat):
    flat, _ = ravel_pytree(model)
    with jax.default_matmul_precision("highest"):
        # ARPACK's matvec: the same HVP, applied to an (n, 1) block as the eoslib solvers do (on XLA
        # CPU that is several times faster than on a bare vector); it re-linearises at every call,
        # which is the price of scipy's reverse-communication interface
        hvp = jax.jit(lambda p, v, x, y: jax.vmap(hessian.flat_hvp(lambda q: loss(q, x, y), p)[0],
                                                  in_axes=1, out_axes=1)(v[:, None])[:, 0])

        def solver(method):
            def solve(p, v0, x, y):
                matvec = hessian.flat_hvp(lambda q: loss(q, x, y), p)[0]
                if method == "thick":
                    return linalg.thick_restart_eigsh(matvec, v0, k, tol=1e-6, max_restarts=100)
                return linalg.eigsh(matvec, v0, k, tol=1e-6, max_restarts=100)
            return jax.jit(solve)

        v0 = jax.random.normal(jax.random.key(1), flat.shape)
        row = {"k": k}
        for method in ("thick", "block"):
            fn = solver(method)
            res = fn(model, v0, x, y)
            row[method] = dict(seconds=timeit(fn, model, v0, x, y, repeat=repeat), hvps=int(res.matvecs),
                               converged=bool(res.converged), values=np.asarray(res.values).tolist())
        count = [0]

        def scipy_matvec(u):
            count[0] += 1
            return np.asarray(hvp(model, jnp.asarray(u, flat.dtype), x, y), dtype=np.float64)

        op = sla.LinearOperator((flat.size, flat.size), matvec=scipy_matvec, dtype=np.float64)
        times = []
        for _ in range(repeat):
            count[0] = 0
            t = time.perf_counter()
            vals = sla.eigsh(op, k=k, which="LA", tol=1e-6, v0=np.asarray(v0, np.float64))[0][::-1]
            times.append(time.perf_counter() - t)
        row["scipy"] = dict(seconds=float(np.median(times)), hvps=count[0], values=vals.tolist())
    for method in ("thick", "block"):
        ours = np.asarray(row[method]["values"])
        row[method]["max_rel_diff_vs_scipy"] = float(np.max(np.abs(ours - vals) / np.abs(vals)))
        row[method]["time_over_scipy"] = row[method]["seconds"] / row["scipy"]["seconds"]
    return row


def warm(eos_n, steps, probe_every):
    """GD at η = 2/100 with two warm λ₁ probes every ``probe_every`` steps, each started from its
    own previous eigenvector: block Lanczos (``train.run``'s probe) and thick restart."""
    model, objective, x, y, source = problem(eos_n, real=True)
    flat0, unravel = ravel_pytree(model)
    loss = lambda f: objective(unravel(f), x, y, {})[0]
    grad = jax.grad(loss)

    def interval(carry, _):
        f, u_block, u_thick = carry
        with jax.default_matmul_precision("highest"):
            matvec = hessian.flat_hvp(lambda q: objective(q, x, y, {})[0], unravel(f))[0]
            b = linalg.eigsh(matvec, u_block[:, None], 1, tol=1e-3, num_iters=20, max_restarts=2)
            t = linalg.thick_restart_eigsh(matvec, u_thick, 1, tol=1e-3, max_restarts=10)
        f = jax.lax.fori_loop(0, probe_every, lambda i, g: g - 0.02 * grad(g), f)
        return (f, b.vectors[:, 0], t.vectors[:, 0]), (b.values[0], b.matvecs, t.values[0], t.matvecs)

    u = jax.random.normal(jax.random.key(5), flat0.shape)
    u = u / jnp.linalg.norm(u)
    run = jax.jit(lambda f, u: jax.lax.scan(interval, (f, u, u), None, length=steps // probe_every)[1])
    s_block, n_block, s_thick, n_thick = map(np.asarray, run(flat0, u))
    at_edge = s_block[1:] >= 0.9 * 2 / 0.02
    pick = lambda a: float(np.median(a[1:][at_edge])) if at_edge.any() else None
    return dict(data=source, n=eos_n, steps=steps, probe_every=probe_every, probes=int(s_block.size),
                probes_at_edge=int(at_edge.sum()),
                block_hvps_median=float(np.median(n_block[1:])), thick_hvps_median=float(np.median(n_thick[1:])),
                block_hvps_median_at_edge=pick(n_block), thick_hvps_median_at_edge=pick(n_thick),
                max_rel_diff_block_vs_thick=float(np.max(np.abs(s_block - s_thick) / np.abs(s_block))))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--eos-n", type=int, default=1000)
    parser.add_argument("--eos-steps", type=int, default=400)
    parser.add_argument("--probe-every", type=int, default=20)
    args = parser.parse_args()
    model, objective, x, y, source = problem(args.n, real=True)
    loss = lambda p, x, y: objective(p, x, y, {})[0]
    out = {"n": args.n, "data": source, "cold": [cold(model, loss, x, y, k, args.repeat) for k in (1, 10)]}
    if args.eos_steps:
        out["warm"] = warm(args.eos_n, args.eos_steps, args.probe_every)
    write("eigsolvers", out)


if __name__ == "__main__":
    main()
