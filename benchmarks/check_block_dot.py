"""The float32 block ``dot`` on XLA CPU: which shapes lose accuracy, and what it does to ``eigsh``.

``python benchmarks/check_block_dot.py`` prints a table: the relative error (max entry, against
float64) of the Gram matrix ``aᵀa`` of p random unit columns of length n, made by a float32
``jnp.matmul(a.T, a, precision="highest")`` inside and outside ``jit``, and by
``linalg._inner`` (column-wise reductions), the library's contraction over the long axis.

``python benchmarks/check_block_dot.py --eigsh`` adds the fc-tanh Hessian of ``common.problem``
(1,000 CIFAR images, 656,810 parameters): float32 ``linalg.eigsh`` with block size b = k = 1, 2, 3
(random start, tol 1e-6), its median time over a few repeats, and its eigenvalues against a float64
thick-restart reference on the same parameters.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from eoslib.engine import hessian, linalg


def table(ns=(10_000, 100_000, 656_810), ps=(1, 2, 3, 4, 5, 6, 8, 10)):
    rng = np.random.default_rng(0)
    jitted = jax.jit(lambda a: jnp.matmul(a.T, a, precision="highest"))
    inner = jax.jit(lambda a: linalg._inner(a, a, "highest"))
    print("relative error of float32 aᵀa, a (n, p) with unit columns (float64 reference)")
    print(f"{'n':>8} {'p':>3} {'jit dot':>9} {'eager dot':>9} {'_inner':>9}")
    for n in ns:
        for p in ps:
            a = rng.standard_normal((n, p))
            a /= np.linalg.norm(a, axis=0)
            ref = a.T @ a
            a32 = a.astype(np.float32)
            errs = [np.max(np.abs(np.asarray(f(a32), np.float64) - ref))
                    for f in (jitted, lambda a: jnp.matmul(a.T, a, precision="highest"), inner)]
            print(f"{n:>8} {p:>3} " + " ".join(f"{e:9.1e}" for e in errs), flush=True)


def eigsh_check(n_data=1_000, repeat=3):
    from jax.flatten_util import ravel_pytree

    from common import problem

    model, loss, x, y, source = problem(n_data)
    print(f"fc-tanh, {n_data} images ({source})")
    cast = lambda tree, dt: jax.tree.map(lambda a: a.astype(dt) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)

    def solve(method, k):
        def run(p, v0, x, y):
            matvec = hessian.flat_hvp(lambda q: loss(q, x, y, {})[0], p)[0]
            with jax.default_matmul_precision("highest"):
                if method == "thick":
                    return linalg.thick_restart_eigsh(matvec, v0, k, tol=1e-9, max_restarts=200)
                return linalg.eigsh(matvec, v0, k, tol=1e-6, max_restarts=100)
        return jax.jit(run)

    flat, _ = ravel_pytree(model)
    rows = []
    for k in (1, 2, 3):
        v0 = jax.random.normal(jax.random.key(1), (flat.size, k), jnp.float32)
        fn = solve("block", k)
        res = jax.block_until_ready(fn(model, v0, x, y))
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            jax.block_until_ready(fn(model, v0, x, y))
            times.append(time.perf_counter() - t)
        rows.append((k, np.asarray(res.values, np.float64), int(res.matvecs), bool(res.converged),
                     float(np.median(times))))
    jax.config.update("jax_enable_x64", True)
    p64, x64, y64 = cast(model, jnp.float64), jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64)
    v64 = jax.random.normal(jax.random.key(1), (flat.size,), jnp.float64)
    ref = solve("thick", 3)(p64, v64, x64, y64)
    ref_values = np.asarray(ref.values)
    print(f"float64 thick restart reference: {ref_values.tolist()} (converged {bool(ref.converged)})")
    print(f"{'b=k':>3} {'seconds':>8} {'HVPs':>5} {'conv':>5}  relative error of λ₁..λ_k")
    for k, values, hvps, conv, seconds in rows:
        rel = np.abs(values - ref_values[:k]) / ref_values[:k]
        print(f"{k:>3} {seconds:8.2f} {hvps:>5} {conv!s:>5}  " + " ".join(f"{r:.1e}" for r in rel)
              + f"   λ = {values.tolist()}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--eigsh", action="store_true", help="also the fc-tanh eigsh check")
    parser.add_argument("--no-table", action="store_true")
    args = parser.parse_args()
    if not args.no_table:
        table()
    if args.eigsh:
        eigsh_check()
