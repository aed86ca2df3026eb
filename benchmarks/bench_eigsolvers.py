"""Cold and warm eigensolves on a network Hessian: thick-restart Lanczos, block Lanczos, ARPACK.

    python benchmarks/bench_eigsolvers.py [--n 2000] [--eos-n 1000] [--eos-steps 400]

1. Cold top-1 and top-10 of the fc-tanh ½MSE Hessian (n examples) at relative tolerance 1e-6:
   :func:`eoslib.engine.linalg.thick_restart_eigsh` and the block :func:`eoslib.engine.linalg.eigsh`
   against ``scipy.sparse.linalg.eigsh`` (ARPACK) driving the *same* jitted HVP, in the same process:
   wall time, HVPs, and the largest relative difference of the eigenvalues (targets: thick ≤ 1.0×
   scipy's time, same accuracy).
2. Warm λ₁ probes along an edge-of-stability GD run (CIFAR-10 subset, η = 2/100, a probe every 20
   steps): HVPs per probe and relative eigenvalue error against a tight reference, for the block
   method at residual tolerance 1e-3·λ (what ``train.run`` does), thick restart and LOBPCG at the
   same tolerance, and the Lanczos solvers stopped on the eigenvalue error bound instead
   (``stop="eigenvalue"``), each warm-started from its own previous eigenvector (target: median ≤ 5
   at the edge, at the same eigenvalue accuracy). LOBPCG's HVPs also in the published convention
   ``k·(4·iters + 1) + 1``. Then starts built from the probe history (issue 20): extrapolated
   vectors, 2-column blocks, and :func:`eoslib.engine.linalg.history_eigsh` (Rayleigh–Ritz on the
   last two eigenvectors), with how close each start is to the new eigenvector and the oracle
   (fewest HVPs to 1e-5 / 1e-6 knowing λ₁) from each. ``--warm-methods`` runs a subset.
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


# the warm probes compared along the EoS run: (name, solver, stopping rule, tol, start); "block" at
# residual 1e-3 from the previous eigenvector is train.run's probe (TrainConfig defaults). Starts
# (issue 20, the extrapolated warm start), built from each method's own probe history, v_k its last
# eigenvector and v_{k-1} the one before, sign-aligned so that <v_k, v_{k-1}> > 0:
#   "previous"       v_k
#   "extrap<beta>"   normalize(v_k + beta (v_k - v_{k-1})), beta = 0.5, 1 (and -0.5: damped)
#   "span2"          the block [v_k, v_k - v_{k-1}] (block Lanczos, 2 HVPs per block step)
#   "ritz2"          the previous top-2 Ritz vectors [v_k, y2_k] (block Lanczos, k = 2: its probe
#                    also waits for the second pair's residual, the price of carrying y2)
#   "history"        linalg.history_eigsh on [v_k, v_{k-1}]: Rayleigh-Ritz on their span (2 HVPs),
#                    then thick-restart Lanczos from the top Ritz vector w, reusing A w (a
#                    combination of the two products), so it counts 2 + (Lanczos steps - 1)
WARM_METHODS = (
    ("block", "block", "residual", 1e-3, "previous"),
    ("thick", "thick", "residual", 1e-3, "previous"),
    ("lobpcg", "lobpcg", "residual", 1e-3, "previous"),
    ("block_eig1e-5", "block", "eigenvalue", 1e-5, "previous"),
    ("thick_eig1e-5", "thick", "eigenvalue", 1e-5, "previous"),
    ("thick_eig1e-6", "thick", "eigenvalue", 1e-6, "previous"),
    ("block_extrap0.5", "block", "residual", 1e-3, "extrap0.5"),
    ("block_extrap1", "block", "residual", 1e-3, "extrap1"),
    ("block_extrap-0.5", "block", "residual", 1e-3, "extrap-0.5"),
    ("block_span2", "block", "residual", 1e-3, "span2"),
    ("block_ritz2", "block", "residual", 1e-3, "ritz2"),
    ("history", "history", "residual", 1e-3, "history"),
)


ORACLE_STEPS = 12


def _probe(method, matvec, v, stop, tol, k=1):
    if method == "block":
        v = v[:, None] if v.ndim == 1 else v
        return linalg.eigsh(matvec, v, k, tol=tol, stop=stop, num_iters=20 if v.shape[1] == 1 else 10,
                            max_restarts=2)
    if method == "thick":
        return linalg.thick_restart_eigsh(matvec, v, 1, tol=tol, stop=stop, max_restarts=10)
    if method == "history":
        return linalg.history_eigsh(matvec, v, 1, tol=tol, stop=stop, max_restarts=10)
    return linalg.lobpcg(matvec, v, 1, tol=tol, stop=stop, max_iters=40)


def _unit(v):
    return v / jnp.linalg.norm(v)


def _difference(v, prev):
    """v_k - v_{k-1} with v_{k-1} sign-aligned to v_k; zero where there is no history (prev = 0)."""
    sign = jnp.where(jnp.vdot(v, prev) < 0, -1.0, 1.0)
    return jnp.where(jnp.linalg.norm(prev) > 0, v - sign * prev, 0.0)


def _second_column(v, d):
    """d as the second start column; a fixed random direction where d is zero (no history yet)."""
    fallback = jax.random.normal(jax.random.key(11), v.shape, v.dtype)
    norm = jnp.linalg.norm(d)
    return jnp.where(norm > 1e-6, d / jnp.where(norm > 0, norm, 1.0), _unit(fallback))


def _rayleigh_ritz_start(matvec, v, d):
    """The top Ritz vector of span{v, d} (2 HVPs; v alone where d is zero): the vector that
    ``linalg.history_eigsh`` starts its Lanczos steps from, for the oracle and the closeness."""
    basis = jnp.stack([v, _second_column(v, d)], axis=1)
    basis = linalg._qr(basis)
    image = jax.vmap(matvec, in_axes=1, out_axes=1)(basis)
    small = linalg._inner(basis, image, "highest")
    _, vecs = jnp.linalg.eigh((small + small.T) / 2)
    w = basis @ vecs[:, -1]
    return jnp.where(jnp.linalg.norm(d) > 1e-6, w, v)


def _start(kind, matvec, state):
    """The start vector (or block) of a warm probe from its history ``state = (v_k, v_{k-1}, y2_k)``."""
    v, prev, second = state
    d = _difference(v, prev)
    if kind.startswith("extrap"):
        return _unit(v + float(kind[len("extrap"):]) * d)
    if kind == "span2":
        return jnp.stack([v, _second_column(v, d)], axis=1)
    if kind == "ritz2":
        return jnp.stack([v, second], axis=1)
    if kind == "history":
        return jnp.stack([v, prev], axis=1)
    return v


def lobpcg_convention(k, native):
    """HVPs of a LOBPCG probe in the convention ``k·(4·iters + 1) + 1`` of published counts, from
    eoslib's native count ``k·(iters + 1)`` (k for the start block, k per iteration)."""
    iters = native // k - 1
    return k * (4 * iters + 1) + 1


def _fewest(ritz, ref, target, offset=0, per_step=1):
    """Per probe: the fewest HVPs after which the Ritz values ``ritz`` (probes × steps) come within
    a relative error ``target`` of ``ref`` (ORACLE_STEPS·per_step + 1 + offset if never)."""
    err = np.abs(ritz - ref[:, None]) / np.abs(ref[:, None])
    reached = err <= target
    steps = np.where(reached.any(axis=1), reached.argmax(axis=1) + 1, ritz.shape[1] + 1)
    return steps * per_step + offset


def warm(eos_n, steps, probe_every, names=None):
    """GD at η = 2/100 with warm λ₁ probes every ``probe_every`` steps (:data:`WARM_METHODS`, each
    started from its own probe history) and a tight reference (thick restart, residual 1e-6·λ, warm
    from the previous reference vector) on the same parameters."""
    methods = [m for m in WARM_METHODS if names is None or m[0] in names]
    model, objective, x, y, source = problem(eos_n, real=True)
    flat0, unravel = ravel_pytree(model)
    loss = lambda f: objective(unravel(f), x, y, {})[0]
    grad = jax.grad(loss)
    oracle_kinds = ("previous", "extrap0.5", "extrap1", "history", "span2")

    def interval(carry, index):
        f, states, u_ref = carry
        with jax.default_matmul_precision("highest"):
            matvec = hessian.flat_hvp(lambda q: objective(q, x, y, {})[0], unravel(f))[0]
            starts = [_start(start, matvec, state) for (_, _, _, _, start), state in zip(methods, states)]
            results = [_probe(method, matvec, v0, stop, tol, k=2 if start == "ritz2" else 1)
                       for (_, method, stop, tol, start), v0 in zip(methods, starts)]
            ref = linalg.thick_restart_eigsh(matvec, u_ref, 2, tol=1e-6, max_restarts=20)
            # what Lanczos starts from: for "history", the top Ritz vector of span{v_k, v_{k-1}}
            # (made again here, outside the probe's count, for the oracle and the closeness only)
            starts = [_rayleigh_ritz_start(matvec, state[0], _difference(state[0], state[1]))
                      if start == "history" else v0
                      for (_, _, _, _, start), state, v0 in zip(methods, states, starts)]
            # the oracle: ORACLE_STEPS Lanczos (block) steps from each start, no stopping rule
            oracles = [linalg.lanczos(ORACLE_STEPS // (2 if v0.ndim == 2 else 1))(matvec, v0).tridiagonal
                       if start in oracle_kinds else None
                       for (_, _, _, _, start), v0 in zip(methods, starts)]
        # how close each start is: sin² of the angle between the reference eigenvector and the
        # vector Lanczos starts from (for a block, the start's span)
        u = ref.vectors[:, 0]
        closeness = [1.0 - jnp.sum(linalg._inner(linalg._qr(v0[:, None] if v0.ndim == 1 else v0), u[:, None], "highest") ** 2)
                     for v0 in starts]
        # the best beta in hindsight: v_k + beta (v_k - v_{k-1}) closest to the reference vector
        best_beta = []
        for v, prev, _ in states:
            basis = jnp.stack([v, _difference(v, prev)], axis=1)
            gram = linalg._inner(basis, basis, "highest")
            a, c = jnp.linalg.solve(gram + 1e-12 * jnp.eye(2), linalg._inner(basis, u[:, None], "highest")[:, 0])
            best_beta.append(c / a)
        f = jax.lax.fori_loop(0, probe_every, lambda i, g: g - 0.02 * grad(g), f)
        out = [(r.values[0], r.matvecs, r.error_bounds[0]) for r in results]
        # the history: v_{k-1} only from probe 1 on (the first probe's start is the random u)
        states = [(r.vectors[:, 0], jnp.where(index >= 1, v, 0.0),
                   r.vectors[:, 1] if r.vectors.shape[1] > 1 else second)
                  for r, (v, _, second) in zip(results, states)]
        return (f, states, ref.vectors[:, 0]), (out, ref.values, ref.converged, oracles, closeness, best_beta)

    u = jax.random.normal(jax.random.key(5), flat0.shape)
    u = u / jnp.linalg.norm(u)
    second = _unit(jax.random.normal(jax.random.key(6), flat0.shape))
    second = _unit(second - jnp.vdot(second, u) * u)
    init = [(u, jnp.zeros_like(u), second) for _ in methods]
    run = jax.jit(lambda f, u: jax.lax.scan(interval, (f, init, u), jnp.arange(steps // probe_every))[1])
    # products of 2-column blocks over the parameters are column-wise reductions in linalg._inner: a
    # float32 dot of two (n, 2) blocks on XLA CPU was off by 3e-4 and charged the 2-column start
    out, ref_values, ref_converged, oracles, closeness, best_beta = jax.tree.map(np.asarray, run(flat0, u))
    ref = ref_values[:, 0]
    at_edge = ref[1:] >= 0.9 * 2 / 0.02  # the first probe has nothing to warm-start from
    row = dict(data=source, n=eos_n, steps=steps, probe_every=probe_every, probes=int(ref.size),
               probes_at_edge=int(at_edge.sum()), reference_converged=float(np.mean(ref_converged)),
               reference_gap_over_lambda_median=float(np.median((ref_values[:, 0] - ref_values[:, 1]) / ref)),
               methods={})
    med_edge = lambda a: float(np.median(a[at_edge])) if at_edge.any() else None
    for (name, method, stop, tol, start), (values, hvps, bounds), oracle, close, beta in zip(
            methods, out, oracles, closeness, best_beta):
        err = (np.abs(values - ref) / np.abs(ref))[1:]
        hvps = hvps[1:]
        entry = dict(solver=method, stop=stop, tol=tol, start=start, hvps_median=float(np.median(hvps)),
                     hvps_median_at_edge=med_edge(hvps),
                     hvps_max=int(hvps.max()), rel_err_median=float(np.median(err)), rel_err_max=float(np.max(err)),
                     rel_err_median_at_edge=med_edge(err),
                     rel_err_max_at_edge=float(np.max(err[at_edge])) if at_edge.any() else None,
                     # the a-posteriori bound against the error measured (float32: the reference's
                     # own error, ~1e-7·λ, is below the smallest bounds compared here)
                     bound_holds_fraction=float(np.mean(np.abs(values - ref)[1:] <= bounds[1:])),
                     start_sin2_median=float(np.median(close[1:])), start_sin2_median_at_edge=med_edge(close[1:]),
                     # from the third probe on (the first two have no v_{k-1})
                     best_beta=beta[2:].tolist(), best_beta_median=float(np.median(beta[2:])),
                     hvps=hvps.tolist())
        if method == "lobpcg":
            conv = np.array([lobpcg_convention(1, int(h)) for h in hvps])
            entry.update(convention_hvps_median=float(np.median(conv)),
                         convention_hvps_median_at_edge=float(np.median(conv[at_edge])) if at_edge.any() else None)
        if oracle is not None:
            # the fewest HVPs after which the warm Lanczos Ritz value from this start is within a
            # relative error of the reference: what an ideal stopping rule could reach from it
            per_step = 2 if start == "span2" else 1
            ritz = np.array([[np.linalg.eigvalsh(T[:j, :j].astype(np.float64)).max()
                              for j in range(per_step, T.shape[0] + 1, per_step)] for T in oracle])
            for target in (1e-5, 1e-6):
                # history: 2 Rayleigh-Ritz products, the first Lanczos step's reused
                fewest = _fewest(ritz, ref, target, offset=1 if start == "history" else 0, per_step=per_step)[1:]
                entry[f"oracle_hvps_to_{target:g}"] = dict(median=float(np.median(fewest)),
                                                           median_at_edge=med_edge(fewest),
                                                           max=int(fewest.max()), hvps=fewest.tolist())
                if name == "block":  # the key the first table's oracle row was read from
                    row[f"oracle_hvps_to_{target:g}"] = entry[f"oracle_hvps_to_{target:g}"]
        row["methods"][name] = entry
    return row


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--eos-n", type=int, default=1000)
    parser.add_argument("--eos-steps", type=int, default=400)
    parser.add_argument("--probe-every", type=int, default=20)
    parser.add_argument("--warm-methods", nargs="*", default=None,
                        help="names from WARM_METHODS to run (default all; for quick iteration)")
    parser.add_argument("--skip-cold", action="store_true",
                        help="only the warm probes (written to eigsolvers-warm-<platform>.json)")
    args = parser.parse_args()
    model, objective, x, y, source = problem(args.n, real=True)
    loss = lambda p, x, y: objective(p, x, y, {})[0]
    out = {"n": args.n, "data": source}
    if not args.skip_cold:
        out["cold"] = [cold(model, loss, x, y, k, args.repeat) for k in (1, 10)]
    if args.eos_steps:
        out["warm"] = warm(args.eos_n, args.eos_steps, args.probe_every, args.warm_methods)
    write("eigsolvers-warm" if args.skip_cold else "eigsolvers", out)


if __name__ == "__main__":
    main()
