"""The costly pieces of the book-scale chapters, timed: compile and run, before and after a change.

    PYTHONPATH=src python benchmarks/bench_chapter_pieces.py --pieces probe,wd-mlp,selfstab \\
        --save /tmp/after.npz

Each piece is the chapter's own call with its ``book`` settings (same model, data, step size,
probes and tolerances), truncated to fewer steps where noted, so that the old and the new library
can be timed on the same work in one session: run the script once with ``PYTHONPATH`` on each
tree and compare. Per piece: ``first_s`` (the first call: tracing, compiling and running) and
``again_s`` (the same call again in the same process: what a cached program costs), median of
``--repeat``; ``compile_s`` is what JAX's monitoring events attribute to compilation in the
first call. ``--save`` writes the piece's recorded arrays, and ``--compare OTHER.npz`` reports the
largest relative difference against another tree's (the equality check of a speed change).

Pieces:

- ``bookkeeping``: the eigensolver alone (a diagonal operator of the fc nets' size), alone and for
  5 vmapped members;
- ``probe``: one warm top-1 Hessian probe (``hessian.eigsh``, tol 1e-3, from the previous
  eigenvector) of weight-decay's fc-relu (656,810 parameters) on its 500 CIFAR-10 images, alone
  and vmapped over the chapter's 5 members;
- ``wd-mlp``: weight-decay's MLP sweep (5 members: γ ∈ {0, 0.0025, 0.02, 0.05} and a second seed
  at 0.02; alignment at the midpoint and NTK probes every 150 steps), ``--wd-steps`` steps;
- ``wd-intervention``: weight-decay's intervened run (decay projected off ∇S, refreshed every 5
  steps, decay-channel probe), ``--wd-steps`` steps;
- ``selfstab``: self-stabilization's ``edge_sweep`` (fc-tanh width 32, 250 images, η ∈ {0.01,
  0.012, 0.014}, warm-up to 0.97 of the edge), ``--ss-steps`` coupled steps.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from eoslib.engine import data, hessian, losses, models, optim, probes, train

COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                  "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")
_compile = {"s": 0.0, "n": 0}


def _listener(event, duration, **_):
    if event in COMPILE_EVENTS:
        _compile["s"] += duration
        _compile["n"] += event == COMPILE_EVENTS[-1]


jax.monitoring.register_event_duration_secs_listener(_listener)


def timed(fn, repeat):
    """(first call's seconds, its compile seconds and backend compiles, median of the repeats
    after it, the last result)."""
    c0 = dict(_compile)
    t = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - t
    compile_s, compiles = _compile["s"] - c0["s"], _compile["n"] - c0["n"]
    again = []
    c1 = dict(_compile)
    for _ in range(repeat):
        t = time.perf_counter()
        out = jax.block_until_ready(fn())
        again.append(time.perf_counter() - t)
    return {"first_s": first, "compile_s": compile_s, "compiles": compiles,
            "again_s": float(np.median(again)) if again else None,
            "again_compiles": _compile["n"] - c1["n"]}, out


def piece_probe(args):
    ds = data.load_cifar10(n=500)
    x, y = jnp.asarray(ds.x), jnp.asarray(ds.onehot)
    params = models.by_name("fc-relu", key=jax.random.key(0))
    loss = lambda p: losses.half_mse(p(x), y)
    v = hessian.eigsh(loss, params, 1, key=jax.random.key(1), tol=1e-6).vectors  # a converged start
    # a small move along the gradient so that the warm probe has something to do
    g = jax.grad(loss)(params)
    moved = jax.tree.map(lambda p, d: p - 0.02 * d, params, g)
    one = jax.jit(lambda p, v0: hessian.eigsh(loss, p, 1, v0=v0, tol=1e-3, max_restarts=2, num_iters=20))
    stats1, r1 = timed(lambda: one(moved, v), args.repeat)
    batch = lambda a: jnp.broadcast_to(a, (5,) + a.shape)
    members = jax.tree.map(batch, moved)
    many = jax.jit(jax.vmap(lambda p, v0: hessian.eigsh(loss, p, 1, v0=v0, tol=1e-3, max_restarts=2,
                                                        num_iters=20)))
    stats5, r5 = timed(lambda: many(members, batch(v)), args.repeat)
    arrays = {"probe.value": r1.values, "probe.matvecs": r1.matvecs,
              "probe5.values": r5.values, "probe5.matvecs": r5.matvecs}
    return {"single": stats1, "vmap5": stats5, "matvecs": int(r1.matvecs)}, arrays


def _wd_setup():
    ds = data.load_cifar10(n=500)
    members = [(0.0, 0), (0.0025, 0), (0.02, 0), (0.05, 0), (0.02, 1)]
    params0 = jax.vmap(lambda k: models.by_name("fc-relu", key=k))(
        jnp.stack([jax.random.key(s) for _, s in members]))
    return ds, members, params0


def piece_wd_mlp(args):
    ds, members, params0 = _wd_setup()
    config = train.TrainConfig(steps=args.wd_steps, probe_every=150, top_k=1)
    objective = train.supervised("half_mse")
    probe = probes.combine(
        alignment=probes.oscillation_averaged(probes.alignment("half_mse"), how="midpoint"),
        ntk=probes.ntk_top(tol=1e-2))
    sgd = lambda hp: optax.sgd(0.02)

    def go():
        return train.run(objective, sgd, params0, (ds.x, ds.onehot), config,
                         key=jax.random.key(1000), batched_params=True,
                         hparams={"gamma": jnp.asarray([g for g, _ in members])}, probe_fn=probe,
                         progress=False)

    stats, res = timed(go, args.repeat)
    h = res.history
    arrays = {"wd.loss": h.loss, "wd.sharpness": h.sharpness, "wd.matvecs": h.matvecs,
              "wd.c_y": h.extra.alignment.value.c_y, "wd.alpha": h.extra.alignment.value.alpha,
              "wd.ntk": h.extra.ntk.top_eigenvalue}
    return stats, arrays


def piece_wd_intervention(args):
    ds, _, _ = _wd_setup()
    config = train.TrainConfig(steps=args.wd_steps, probe_every=150, top_k=1)
    half_mse = lambda p, batch: losses.half_mse(p(batch[0]), batch[1])
    decay_off = optim.decay_off_sharpness_gradient(half_mse, 0.02, every=5)
    no_decay = train.supervised("half_mse")
    probe = probes.oscillation_averaged(probes.decay_channel("half_mse"), how="midpoint")
    make = lambda hp: optax.chain(decay_off, optax.sgd(0.02))
    params = models.by_name("fc-relu", key=jax.random.key(0))

    def go():
        return train.run(no_decay, make, params, (ds.x, ds.onehot), config,
                         key=jax.random.key(1000), probe_fn=probe, progress=False)

    stats, res = timed(go, args.repeat)
    h = res.history
    return stats, {"int.loss": h.loss, "int.sharpness": h.sharpness,
                   "int.c_y": h.extra.value.c_y}


def piece_selfstab(args):
    from eoslib.mechanisms import selfstab

    ds = data.load_cifar10(n=250)
    loss_fn = losses.of_model("half_mse")(jnp.asarray(ds.x), jnp.asarray(ds.onehot))
    params0 = models.by_name("fc-tanh", key=jax.random.key(0), width=32)
    etas = jnp.asarray([0.01, 0.012, 0.014], jnp.float32)
    extra = {} if args.vectorize is None else {"vectorize": args.vectorize == "vmap"}

    def go():
        return selfstab.edge_sweep(loss_fn, params0, etas, args.ss_steps, start_fraction=0.97,
                                   max_warmup=args.ss_warmup, key=jax.random.key(1),
                                   proj_tol=1e-3, eig_tol=1e-4, pred_margin=2e-3, second_every=10,
                                   **extra)

    stats, out = timed(go, args.repeat)
    r = out.record
    arrays = {f"ss.{k}": getattr(r, k) for k in ("loss", "sharpness", "loss_dagger",
                                                   "sharpness_dagger", "x", "y", "pred_loss",
                                                   "pred_sharpness", "iterations")}
    arrays.update({"ss.warmup_steps": out.warmup_steps, "ss.start_sharpness": out.start_sharpness})
    stats["warmup_steps"] = [int(w) for w in out.warmup_steps]
    return stats, arrays


def piece_bookkeeping(args):
    """The eigensolver's own work at the fc nets' size: top-1 block Lanczos (tol 1e-3, 12 steps)
    of a diagonal operator on n = 656,810 (no network), alone and for 5 vmapped members, plainly
    and (where the library has it) through ``linalg.one_member_at_a_time``."""
    from eoslib.engine import linalg

    n = 656810
    d = jnp.linspace(0.0, 1.0, n).at[-1].set(1.2)
    v0 = jnp.ones(n).at[-1].set(30.0)

    def solve(d, v0):
        return linalg.eigsh(lambda v: d * v, v0, 1, tol=1e-3, max_restarts=2, num_iters=20)

    stats = {}
    stats["single"], r1 = timed(lambda f=jax.jit(solve): f(d, v0), args.repeat)
    batch = lambda a: jnp.broadcast_to(a, (5,) + a.shape)
    stats["vmap5"], r5 = timed(lambda f=jax.jit(jax.vmap(solve)): f(batch(d), batch(v0)), args.repeat)
    arrays = {"book.value": r1.values, "book.values5": r5.values}
    if hasattr(linalg, "one_member_at_a_time"):
        f = jax.jit(jax.vmap(linalg.one_member_at_a_time(solve)))
        stats["vmap5_one_at_a_time"], _ = timed(lambda: f(batch(d), batch(v0)), args.repeat)
    return stats, arrays


PIECES = {"bookkeeping": piece_bookkeeping, "probe": piece_probe, "wd-mlp": piece_wd_mlp, "wd-intervention": piece_wd_intervention,
          "selfstab": piece_selfstab}


def compare(a: dict, b_path: str) -> dict:
    with np.load(b_path) as z:
        b = {k: z[k] for k in z.files}
    out = {}
    for k in sorted(set(a) & set(b)):
        x, y = np.asarray(a[k], np.float64), np.asarray(b[k], np.float64)
        if x.shape != y.shape:
            out[k] = f"shapes differ {x.shape} vs {y.shape}"
            continue
        both = np.isfinite(x) & np.isfinite(y)
        same_nan = bool(np.all(np.isnan(x) == np.isnan(y)))
        scale = np.maximum(np.abs(y), 1e-12)
        rel = float(np.max(np.abs(x - y)[both] / scale[both])) if both.any() else 0.0
        out[k] = {"max_rel": rel, "equal": bool(np.array_equal(x, y, equal_nan=True)),
                  "same_nan": same_nan}
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pieces", default="probe,wd-mlp,wd-intervention,selfstab")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--wd-steps", type=int, default=300)
    parser.add_argument("--ss-steps", type=int, default=30)
    parser.add_argument("--ss-warmup", type=int, default=5000)
    parser.add_argument("--vectorize", choices=["vmap", "map"], default=None)
    parser.add_argument("--save")
    parser.add_argument("--compare")
    parser.add_argument("--label", default="")
    parser.add_argument("--json")
    args = parser.parse_args()
    load = os.getloadavg()
    results, arrays = {}, {}
    for name in args.pieces.split(","):
        stats, arr = PIECES[name](args)
        results[name] = stats
        arrays.update({k: np.asarray(v) for k, v in arr.items()})
        print(name, json.dumps(stats, default=float), flush=True)
    payload = {"label": args.label, "load_before": load, "load_after": os.getloadavg(),
               "args": vars(args), "pieces": results, "jax": jax.__version__,
               "device": str(jax.devices()[0])}
    if args.compare:
        payload["compare"] = compare(arrays, args.compare)
        print(json.dumps(payload["compare"], indent=1))
    if args.save:
        np.savez(args.save, **arrays)
    if args.json:
        Path(args.json).write_text(json.dumps(payload, indent=2, default=float))
    print(json.dumps({k: v for k, v in payload.items() if k != "compare"}, default=float))


if __name__ == "__main__":
    main()
