"""eoslib.plot_edge draws the standard EoS figure of a track run, for each kind of run."""

import matplotlib

matplotlib.use("Agg")

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
import pytest

import eoslib


@pytest.mark.parametrize("optimizer, batch_size, measure", [
    (optax.sgd(0.3), None, "sharpness"), (optax.sgd(0.3), 8, "batch_sharpness"),
    (optax.adam(0.01), None, "preconditioned_sharpness")])
def test_plot_edge_draws_the_measure_against_its_edge(optimizer, batch_size, measure):
    x = jax.random.normal(jax.random.key(0), (24, 3))
    labels = jnp.arange(24) % 2
    params = {"w": jax.random.normal(jax.random.key(1), (3, 2)) / 2}

    def loss(p, x, y):
        logits = jnp.tanh(x @ p["w"])
        return -jnp.mean(jnp.sum(jax.nn.one_hot(y, 2, dtype=logits.dtype) * jax.nn.log_softmax(logits), -1)), logits

    h = eoslib.track(loss, params, (x, labels), optimizer, steps=6, probe_every=3, top_k=2,
                     batch_size=batch_size, batches=2, progress=False)
    assert h.measure == measure
    fig = eoslib.plot_edge(h)
    left, right = fig.axes[:2]
    edge_lines = [line for line in right.get_lines() if np.allclose(line.get_ydata(), h.edge)]
    assert edge_lines and edge_lines[0].get_linestyle() == "--"
    assert len(fig.axes) == 3  # the accuracy's twin axis
    plt.close(fig)
    with pytest.raises(ValueError, match="history must be what eoslib.track returned"):
        eoslib.plot_edge({"loss": [1.0]})
