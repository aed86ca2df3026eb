"""What one GD step and one Hessian-vector product cost, per chapter architecture, at the paper's sizes.

    python benchmarks/bench_chapter_costs.py [--repeat 3] [--only fc-tanh,shallow-relu]

The measurements a chapter's ``long`` scale is chosen from (issue 35): for each architecture the
chapters train, on inputs of the paper's shape and number (random values: the cost does not depend
on them), the median wall time of

- ``step``: one jitted full-batch GD step (gradient of the chapter's loss, the update);
- ``hvp``: one jitted Hessian-vector product at the same parameters (what every iteration of a
  sharpness probe costs; a warm-started top-k probe costs a few of these per eigenvalue);
- ``hvp_block``: ``top_k`` Hessian-vector products batched (``vmap``), for chapters that track the
  top-k eigenvalues with a block solver;

and from them the arithmetic of the paper's own horizon for that chapter (``steps`` GD steps and
one HVP block every ``probe_every`` steps, before any eigensolver iterations: a lower bound).
Compilation is excluded (one warm-up call). Results go to ``$OUT`` or ``benchmarks/results``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from common import timeit, write
from eoslib.engine import hessian, models, train


class Case(NamedTuple):
    """One chapter architecture at the paper's size."""

    name: str
    chapters: str
    build: Callable[[jax.Array], Any]  # key -> model
    x_shape: tuple[int, ...]
    outputs: int
    hp: dict[str, float]
    top_k: int
    paper_steps: int  # the paper's horizon (one member)
    paper_probe_every: int
    note: str


CASES = (
    Case("fc-tanh", "eos-intro", lambda k: models.fc_tanh(key=k), (5000, 32, 32, 3), 10, {}, 1,
         8000, 20, "3072-200-200-10, 5,000 CIFAR-10 images, ½MSE"),
    Case("fc-relu+wd", "weight-decay", lambda k: models.by_name("fc-relu", key=k), (5000, 32, 32, 3),
         10, {"gamma": 0.02}, 1, 8000, 50, "3072-200-200-10 ReLU, 5,000 images, ½MSE + γ/2‖θ‖²"),
    Case("fc-relu+wd-500", "weight-decay", lambda k: models.by_name("fc-relu", key=k),
         (500, 32, 32, 3), 10, {"gamma": 0.02}, 1, 10000, 50,
         "the same on 500 images (the issue's ≥ 10k-step long setting)"),
    Case("shallow-relu", "shallow-relu", lambda k: models.MLP(3072, (128,), 1, "relu", key=k),
         (1000, 32, 32, 3), 1, {}, 10, 10000, 20, "3072-128-1 ReLU, 1,000 images, top-10"),
    Case("fmnist-mlp", "kappa-dynamics, flatness-generalization",
         lambda k: models.fmnist_mlp(key=k, width=32), (1000, 28, 28, 1), 4, {}, 1, 6000, 5,
         "784-32-32-32-32-4 ReLU, 1,000 images"),
)


def measure(case: Case, repeat: int) -> dict[str, Any]:
    key = jax.random.key(0)
    model = case.build(key)
    x = jax.random.normal(jax.random.key(1), case.x_shape)
    y = jax.nn.one_hot(jnp.arange(case.x_shape[0]) % case.outputs, case.outputs) \
        if case.outputs > 1 else jnp.sign(jax.random.normal(jax.random.key(2), (case.x_shape[0], 1)))
    objective = train.supervised("half_mse")
    hp = {k: jnp.float32(v) for k, v in case.hp.items()}

    def loss(p):
        return objective(p, x, y, hp)[0]

    import equinox as eqx

    params, static = eqx.partition(model, eqx.is_array)

    def loss_flat(p):
        return loss(eqx.combine(p, static))

    @jax.jit
    def step(p):
        g = jax.grad(loss_flat)(p)
        return jax.tree.map(lambda a, b: a - 0.01 * b, p, g)

    flat, unravel = jax.flatten_util.ravel_pytree(params)
    n_params = int(flat.size)

    @jax.jit
    def hvp(p, v):
        return hessian.hvp(loss_flat, p, unravel(v))

    @jax.jit
    def hvp_block(p, vs):
        return hessian.hvp_batch(loss_flat, p, vs)

    v = jax.random.normal(jax.random.key(3), (n_params,))
    vs = jax.random.normal(jax.random.key(4), (case.top_k, n_params))
    t = time.perf_counter()
    t_step = timeit(step, params, repeat=repeat)
    t_hvp = timeit(hvp, params, v, repeat=repeat)
    t_block = timeit(hvp_block, params, vs, repeat=repeat) if case.top_k > 1 else t_hvp
    probes = case.paper_steps // case.paper_probe_every
    floor = case.paper_steps * t_step + probes * t_block
    return {"case": case.name, "chapters": case.chapters, "note": case.note,
            "n_params": n_params, "n_inputs": case.x_shape[0], "top_k": case.top_k,
            "step_s": t_step, "hvp_s": t_hvp, "hvp_block_s": t_block,
            "paper_steps": case.paper_steps, "paper_probe_every": case.paper_probe_every,
            "paper_horizon_floor_min": floor / 60, "measured_in_s": time.perf_counter() - t}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per measurement (median)")
    parser.add_argument("--only", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--note", default="", help="a note stored with the results (e.g. 'under load')")
    args = parser.parse_args()
    only = {s for s in args.only.split(",") if s}
    rows = []
    for case in CASES:
        if only and case.name not in only:
            continue
        row = measure(case, args.repeat)
        rows.append(row)
        print(f"{row['case']:>15}: step {row['step_s'] * 1e3:8.1f} ms  hvp {row['hvp_s'] * 1e3:8.1f} ms"
              f"  hvp x{row['top_k']} {row['hvp_block_s'] * 1e3:8.1f} ms  "
              f"paper horizon ≥ {row['paper_horizon_floor_min']:.1f} min", flush=True)
    load = np.round(np.array(__import__("os").getloadavg()), 1).tolist()
    write("chapter_costs", {"repeat": args.repeat, "note": args.note, "load_average": load, "rows": rows})


if __name__ == "__main__":
    main()
