"""Compiled programs are reused across calls: a second call with the same functions, settings and
shapes compiles nothing (counted with JAX's monitoring events), and gives the same result."""

import contextlib

import jax
import numpy as np
import optax
import pytest

from eoslib.engine import models, train

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def count_compiles():
    """Count XLA backend compilations made inside the block (``counts["n"]``)."""
    counts = {"n": 0}

    def listener(event, duration, **kwargs):
        if event == BACKEND_COMPILE:
            counts["n"] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield counts
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


@pytest.fixture
def problem(getkey):
    model = models.MLP(5, (7,), 2, "tanh", key=getkey())
    x, y = jax.random.normal(getkey(), (16, 5)), jax.random.normal(getkey(), (16, 2))
    return model, (x, y)


def test_a_run_of_another_length_reuses_the_compiled_chunk(problem):
    """The chunk program does not depend on ``steps`` or ``chunks``: a run that differs only
    there compiles nothing new (it used to compile the same program again, since the config was
    part of the cache key)."""
    model, data = problem
    objective, make_opt = train.supervised("half_mse"), lambda hp: optax.sgd(0.1)

    def run(steps, chunks):
        cfg = train.TrainConfig(steps=steps, probe_every=2, top_k=1, chunks=chunks)
        return train.run(objective, make_opt, model, data, cfg, key=jax.random.key(0),
                         progress=False)

    first = run(8, 4)  # 4 chunks of one interval of 2 steps
    with count_compiles() as counts:
        second = run(12, 6)  # 6 chunks of the same interval
    assert counts["n"] == 0
    np.testing.assert_array_equal(second.history.loss[:8], first.history.loss)
    np.testing.assert_array_equal(second.history.sharpness[:4], first.history.sharpness)


def test_the_same_run_twice_compiles_nothing_the_second_time(problem):
    model, data = problem
    objective, make_opt = train.supervised("half_mse"), lambda hp: optax.sgd(hp["eta"])
    cfg = train.TrainConfig(steps=6, probe_every=3, top_k=2, chunks=2)

    def run():
        return train.run(objective, make_opt, model, data, cfg, key=jax.random.key(1),
                         hparams={"eta": np.array([0.05, 0.1])}, progress=False)

    first = run()
    with count_compiles() as counts:
        second = run()
    assert counts["n"] == 0
    np.testing.assert_array_equal(second.history.loss, first.history.loss)


def test_supervised_returns_one_objective_per_setting():
    """``supervised`` is memoised: the same arguments give the same function object, so runs
    built from separate calls share their compiled programs."""
    assert train.supervised("half_mse") is train.supervised("half_mse")
    assert train.supervised("half_mse", accuracy="sign") is train.supervised("half_mse", "sign")
    assert train.supervised("half_mse") is not train.supervised("cross_entropy")
