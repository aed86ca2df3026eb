"""Shared test set-up: float64 for the reference comparisons, strict rank promotion (an
implicit broadcast of arrays of different ranks is an error, not a silent outer sum), a seeded
key factory."""

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop every compiled program after each test module. XLA keeps the machine code of each
    program it compiled mapped in memory while a cache holds it (JAX's caches and ``train``'s,
    :func:`eoslib.engine.train.clear_compiled`); the whole suite compiles thousands of
    programs, and one process holding all of them aborted inside an XLA compile (``Fatal Python error: Aborted``) once the
    suite grew past ~600 tests (the process had 2,274 memory maps after the first test module
    alone, and Linux allows 65,530; with the caches dropped per module it stays under ~2,000)."""
    yield
    from eoslib.engine import train

    train.clear_compiled()
    jax.clear_caches()


@pytest.fixture
def getkey():
    """A fresh PRNG key on each call, deterministic per test."""
    keys = iter(jax.random.split(jax.random.key(0), 1000))
    return lambda: next(keys)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def tiny_mlp(key, sizes=(8, 16, 16, 3), activation=None):
    """A small tanh MLP as a list of (W, b); inputs (N, sizes[0]) → outputs (N, sizes[-1])."""
    import jax.numpy as jnp

    keys = jax.random.split(key, len(sizes) - 1)
    params = [(jax.random.normal(k, (m, n)) / jnp.sqrt(m), jnp.zeros(n))
              for k, m, n in zip(keys, sizes[:-1], sizes[1:])]

    def apply(params, x):
        for W, b in params[:-1]:
            x = (activation or jnp.tanh)(x @ W + b[None, :])
        W, b = params[-1]
        return x @ W + b[None, :]

    return params, apply


def make_mlp_problem(dtype="float64"):
    """A real (small) network Hessian: tanh MLP, ½MSE on 32 random examples; parameters and data
    in ``dtype``, so the whole computation runs in it. Returns ``(params, loss, outputs)``."""
    import jax.numpy as jnp

    key = jax.random.key(3)
    k1, k2, k3 = jax.random.split(key, 3)
    params, apply = tiny_mlp(k1)
    params = jax.tree.map(lambda a: a.astype(dtype), params)
    x = jax.random.normal(k2, (32, 8)).astype(dtype)
    y = jax.nn.one_hot(jax.random.randint(k3, (32,), 0, 3), 3, dtype=dtype)
    loss = lambda p: 0.5 * jnp.mean(jnp.sum((apply(p, x) - y) ** 2, axis=1))
    return params, loss, (lambda p: apply(p, x))


@pytest.fixture
def mlp_problem():
    """The float64 :func:`make_mlp_problem`."""
    return make_mlp_problem("float64")


@pytest.fixture
def mlp_problem_float32():
    """The same network and data as ``mlp_problem``, all in float32."""
    return make_mlp_problem("float32")
