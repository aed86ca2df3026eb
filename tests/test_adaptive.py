"""Adaptive thresholds against simulation, a traced τ against concrete ones, and the 2-D toy's
closed forms (the preconditioned-sharpness probe is tested in test_probes.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from eoslib.engine import models, optim, train
from eoslib.mechanisms import adaptive


def momentum_gd_amplitude(lam, eta, b1, steps=4000):
    """|x| after EMA-momentum GD on ½λx² (Adam with a frozen preconditioner)."""
    x, m = 1.0, 0.0
    for _ in range(steps):
        m = b1 * m + (1 - b1) * lam * x
        x = x - eta * m
    return abs(x)


@pytest.mark.parametrize("b1", [0.0, 0.5, 0.9])
def test_adam_edge_is_the_stability_limit_of_ema_momentum(b1):
    eta = 0.01
    edge = adaptive.adam_edge(eta, b1)
    assert momentum_gd_amplitude(0.99 * edge, eta, b1) < 1e-3
    assert momentum_gd_amplitude(1.01 * edge, eta, b1) > 1e3


def test_edges_closed_forms_and_bad_input():
    assert adaptive.adam_edge(0.01, 0.0) == adaptive.gd_edge(0.01) == pytest.approx(200.0)
    assert adaptive.adam_edge(0.01, 0.9) == pytest.approx(3800.0)
    with pytest.raises(ValueError, match="b1=1"):
        adaptive.adam_edge(0.01, 1.0)
    with pytest.raises(ValueError, match="eta=0"):
        adaptive.gd_edge(0)


def test_traced_tau_under_vmap_matches_concrete_runs(getkey):
    x = jax.random.normal(getkey(), (16, 4))
    y = jax.nn.one_hot(jax.random.randint(getkey(), (16,), 0, 2), 2)
    params = models.MLP(4, (6,), 2, "tanh", key=getkey())
    config = train.TrainConfig(steps=20)
    taus = [float("inf"), 1e-3, 1e-6]
    swept = train.run(train.supervised("half_mse"), lambda hp: optim.clipped_adam(1e-2, tau=hp["tau"]), params,
                      (x, y), config, key=jax.random.key(0), hparams={"tau": jnp.asarray(taus)}, progress=False)
    for i, tau in enumerate(taus):
        one = train.run(train.supervised("half_mse"), lambda hp, tau=tau: optim.clipped_adam(1e-2, tau=tau), params,
                        (x, y), config, key=jax.random.key(0), progress=False)
        np.testing.assert_allclose(swept.history.loss[i], one.history.loss, rtol=1e-10)


def test_toy_loss_hessian_and_period_two_orbit():
    w0 = jnp.zeros(2)
    np.testing.assert_allclose(jax.hessian(adaptive.toy_loss)(w0, 20.0, 1.0), np.diag([20.0, 1.0]), atol=1e-12)
    # GD with η·sharp = 2.5 > 2: the minimum is unstable along w₀; the orbit is ±a with a = η·sharp·tanh(a)/2
    eta, sharp = 0.125, 20.0
    loss = lambda w: adaptive.toy_loss(w, sharp, 1.0)
    run = adaptive.trajectory(loss, optax.sgd(eta), jnp.array([0.3, 1.0]), 500)
    path = run.w
    assert path.shape == (501, 2) and int(run.diverged_at) == -1
    np.testing.assert_allclose(run.loss, jax.vmap(loss)(path), rtol=1e-12)
    np.testing.assert_allclose(path[1], path[0] - eta * jax.grad(loss)(path[0]), rtol=1e-12)
    w = path[-1]
    step = lambda w: w - eta * jax.grad(loss)(w)
    a = abs(float(w[0]))
    assert a == pytest.approx(eta * sharp * np.tanh(a) / 2, rel=1e-8) and a > 0.5
    assert abs(float(step(w)[0]) + float(w[0])) < 1e-8  # period 2
    assert abs(float(w[1])) < 1e-10  # the flat direction converged
