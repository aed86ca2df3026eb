"""One-off spectral calls (issue 33): ``hessian.sharpness`` cold and warm, against its own HVPs and
against scipy's ARPACK driving the same jitted HVP.

    python benchmarks/bench_oneoff.py [--n 2000] [--width 30] [--repeat 5]

Model: fc-tanh 3072-W-W-10 (W = 30: 93,430 parameters), ½MSE on n CIFAR-10 images (random inputs
when CIFAR-10 is not found). One loss function object, called as a user would:
``hessian.sharpness(loss, params, key=...)`` (top-1, relative residual 1e-6, the default).

1. cold: the first call (it compiles the solve once); warm: the median of ``--repeat`` later calls
   with new start keys (no compilation: ``tests/test_hessian.py`` counts it).
2. the same solve as it ran before the compiled cache (``hessian._eigsh_inline`` called eagerly:
   traced and compiled again at every call).
3. the HVPs alone: the warm call's HVP count × the median time of one jitted HVP (target: warm ≤
   1.2 × that).
4. ARPACK: ``scipy.sparse.linalg.eigsh(k=1, which="LA", tol=1e-6)`` on the jitted HVP, its time and
   HVPs, and the largest relative difference of the eigenvalues.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse.linalg as sla
from jax.flatten_util import ravel_pytree

from common import timeit, write
from eoslib.engine import data, hessian, models, train


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--width", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    source = "random N(0,1)"
    try:
        ds = data.load_cifar10(n=args.n, download=False)
        x, y, source = jnp.asarray(ds.x), jnp.asarray(ds.onehot), ds.source
    except data.DataError:
        x = jax.random.normal(jax.random.key(0), (args.n, 32, 32, 3))
        y = jax.nn.one_hot(jnp.arange(args.n) % 10, 10)
    params = models.fc_tanh(key=jax.random.key(0), width=args.width)
    n_params = int(ravel_pytree(params)[0].size)
    objective = train.supervised("half_mse")

    def loss(p):
        return objective(p, x, y, {})[0]

    keys = iter(jax.random.split(jax.random.key(1), 100))
    t = time.perf_counter()
    jax.block_until_ready(hessian.sharpness(loss, params, key=next(keys)))
    cold = time.perf_counter() - t

    warm_times, hvps, values = [], [], []
    for _ in range(args.repeat):
        t = time.perf_counter()
        values.append(float(hessian.sharpness(loss, params, key=next(keys))))
        warm_times.append(time.perf_counter() - t)
        # the same compiled program (sharpness is eigsh's top value), for its HVP count
        hvps.append(int(hessian.eigsh(loss, params, 1, key=next(keys)).matvecs))
    warm = float(np.median(warm_times))

    before = []
    for _ in range(2):
        t = time.perf_counter()
        with jax.default_matmul_precision("highest"):
            jax.block_until_ready(hessian._eigsh_inline(loss, params, 1, key=next(keys), v0=None,
                                                        precision="highest"))
        before.append(time.perf_counter() - t)

    with jax.default_matmul_precision("highest"):
        hvp = jax.jit(lambda p, v, x, y: hessian.flat_hvp(lambda q: objective(q, x, y, {})[0], p)[0](v))
        v = jax.random.normal(next(keys), (n_params,))
        t_hvp = timeit(hvp, params, v, x, y, repeat=args.repeat)
        count = [0]

        def matvec(u):
            count[0] += 1
            return np.asarray(hvp(params, jnp.asarray(u, jnp.float32), x, y), np.float64)

        op = sla.LinearOperator((n_params, n_params), matvec=matvec, dtype=np.float64)
        v0 = np.random.default_rng(0).standard_normal(n_params)
        sla.eigsh(op, k=1, which="LA", tol=1e-6, v0=v0)  # warm-up (compiles the HVP's batch of 1)
        count[0] = 0
        t = time.perf_counter()
        arpack = float(sla.eigsh(op, k=1, which="LA", tol=1e-6, v0=v0)[0][0])
        t_arpack = time.perf_counter() - t
    median_hvps = int(np.median(hvps))
    payload = {
        "model": f"fc-tanh 3072-{args.width}-{args.width}-10", "parameters": n_params, "n": args.n,
        "data": source,
        "cold_s": cold, "warm_s": warm, "warm_all_s": warm_times, "warm_hvps": hvps,
        "before_cache_s": before,
        "hvp_s": t_hvp, "hvps_only_s": median_hvps * t_hvp, "warm_over_hvps": warm / (median_hvps * t_hvp),
        "arpack_s": t_arpack, "arpack_hvps": count[0],
        "warm_over_arpack": warm / t_arpack,
        "rel_diff_vs_arpack": abs(float(np.median(values)) - arpack) / abs(arpack),
        "sharpness": float(np.median(values)), "sharpness_arpack": arpack,
    }
    write("oneoff", payload)


if __name__ == "__main__":
    main()
