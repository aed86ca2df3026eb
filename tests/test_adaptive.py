"""Adaptive thresholds against simulation, the preconditioned-sharpness probe against dense eigh
in float64, a traced τ against concrete ones, and the 2-D toy's closed forms."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

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


def test_clipped_fraction():
    nu = {"a": jnp.array([1e-6, 1e-4]), "b": jnp.array([1e-2, 1.0])}
    assert float(adaptive.clipped_fraction(nu, jnp.inf)) == 0.0
    assert float(adaptive.clipped_fraction(nu, 1e-3)) == 0.5
    assert float(adaptive.clipped_fraction(nu, 1e-8)) == 1.0


@pytest.fixture
def adam_run(getkey):
    """A tiny MLP after 30 full-batch Clipped-Ada steps, with a probe every 10 steps."""
    x = jax.random.normal(getkey(), (24, 5))
    y = jax.nn.one_hot(jax.random.randint(getkey(), (24,), 0, 3), 3)
    params = models.MLP(5, (8,), 3, "tanh", key=getkey())
    tau = 1e-3
    config = train.TrainConfig(steps=30, probe_every=10, eig_tol=1e-6, eig_max_restarts=10)
    probe = adaptive.precond_probe("half_mse", tau=tau, tol=1e-7, max_restarts=20)
    result = train.run(train.supervised("half_mse"), lambda hp: optim.clipped_adam(1e-2, tau=tau), params,
                       (x, y), config, key=getkey(), probe_fn=probe, progress=False)
    return result, (x, y), tau


def test_precond_probe_matches_dense_eigh(adam_run):
    """At the end of the run (after a last probe) λ₁(P^{-1/2} H P^{-1/2}) agrees with dense eigh."""
    result, (x, y), tau = adam_run
    params, opt_state = result.state.params, result.state.opt_state
    flat, unravel = ravel_pytree(params)
    loss = lambda f: 0.5 * jnp.mean(jnp.sum((unravel(f)(x) - y) ** 2, axis=1))
    H = np.asarray(jax.hessian(loss)(flat), np.float64)
    p = np.asarray(ravel_pytree(optim.preconditioner(opt_state, tau))[0], np.float64)
    dense = np.linalg.eigvalsh(H / np.sqrt(np.outer(p, p)))[-1]
    probe = adaptive.precond_probe("half_mse", tau=tau, tol=1e-8, max_restarts=30)
    _, vectors = np.linalg.eigh(H)
    out = probe(params, opt_state, SimpleNamespace(vectors=jnp.asarray(vectors[:, ::-1])), {}, (x, y))
    np.testing.assert_allclose(float(out["precond_sharpness"]), dense, rtol=1e-6)
    nu = np.asarray(ravel_pytree(optim.bias_corrected_nu(opt_state))[0])
    assert float(out["clipped_fraction"]) == pytest.approx(np.mean(nu > tau))
    # in the loop: finite, positive, recorded at every probe
    assert result.history.extra["precond_sharpness"].shape == (3,)
    assert np.all(result.history.extra["precond_sharpness"] > 0)


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
    path = adaptive.trajectory(loss, optax.sgd(eta), jnp.array([0.3, 1.0]), 500)
    assert path.shape == (501, 2)
    np.testing.assert_allclose(path[1], path[0] - eta * jax.grad(loss)(path[0]), rtol=1e-12)
    w = path[-1]
    step = lambda w: w - eta * jax.grad(loss)(w)
    a = abs(float(w[0]))
    assert a == pytest.approx(eta * sharp * np.tanh(a) / 2, rel=1e-8) and a > 0.5
    assert abs(float(step(w)[0]) + float(w[0])) < 1e-8  # period 2
    assert abs(float(w[1])) < 1e-10  # the flat direction converged
