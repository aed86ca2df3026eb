"""Shared set-up of the benchmarks: the fc-tanh problem, timing, and where results go."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from eoslib.engine import data, models, train
from eoslib.book import results


def problem(n: int, *, real: bool = True, seed: int = 0):
    """fc-tanh (3072-200-200-10, PyTorch-default init) with ½MSE on n examples.

    Real CIFAR-10 when it can be found (``EOSLIB_DATA``), else the peer's random inputs
    (timings do not depend on the values). Returns (model, objective, x, y, source).
    """
    source = "random N(0,1), as the torch peer"
    if real:
        try:
            ds = data.load_cifar10(n=n, download=False)
            x, y, source = jnp.asarray(ds.x), jnp.asarray(ds.onehot), ds.source
        except data.DataError:
            real = False
    if not real:
        x = jax.random.normal(jax.random.key(seed), (n, 32, 32, 3))
        y = jax.nn.one_hot(jnp.arange(n) % 10, 10)
    model = models.fc_tanh(key=jax.random.key(seed))
    return model, train.supervised("half_mse"), x, y, source


def timeit(fn, *args, repeat: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn(*args)`` in seconds, blocking on the result; compile excluded."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def write(name: str, payload: dict) -> Path:
    """Write ``payload`` (plus device / versions) to ``$OUT`` or ``benchmarks/results``."""
    folder = Path(os.environ.get("OUT") or Path(__file__).parent / "results")
    folder.mkdir(parents=True, exist_ok=True)
    device = jax.devices()[0]
    payload = dict(payload, device=f"{device.platform}:{getattr(device, 'device_kind', '')}",
                   provenance=results.provenance())
    path = folder / f"{name}-{device.platform}.json"
    path.write_text(json.dumps(payload, indent=2, default=float))
    print(json.dumps(payload, indent=2, default=float))
    return path
