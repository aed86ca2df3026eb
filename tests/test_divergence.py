"""One definition of divergence: the primitives, and the step each loop records against a plain
Python loop or a closed form (train.run's own case is in test_train.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from eoslib.engine import divergence
from eoslib.mechanisms import adaptive, dln, edge_model


def test_primitives():
    assert divergence.is_bad(jnp.array([1.0, jnp.nan, jnp.inf, -jnp.inf, 11.0]), 10.0).tolist() == [
        False, True, True, True, True]
    d = divergence.start()
    assert int(d) == divergence.NEVER and d.dtype == jnp.int32
    d = divergence.update(d, 3, 1.0, 10.0)
    assert int(d) == -1
    d = divergence.update(d, 4, jnp.nan, 10.0)
    assert int(d) == 4
    assert int(divergence.update(d, 5, 1e9, 10.0)) == 4  # the first step is kept
    rec = divergence.mask(jnp.array(False), (jnp.array(1.0), jnp.array(True), jnp.array(7)))
    assert np.isnan(rec[0]) and not bool(rec[1]) and int(rec[2]) == 7
    with pytest.raises(ValueError, match="max_loss=0"):
        divergence.check_max("max_loss", 0)
    with pytest.raises(ValueError, match="max_loss=nan"):
        divergence.check_max("max_loss", float("nan"))


def test_dln_records_the_first_bad_step():
    theta0, eta, max_loss = jnp.array([-0.1, 10.0]), 0.05, 1e6
    traj = dln.gd(theta0, eta, 40, max_loss=max_loss)
    theta, expected = np.array(theta0), -1
    for t in range(41):
        loss = (theta[0] * theta[1]) ** 2
        if not np.isfinite(loss) or loss > max_loss:
            expected = t
            break
        theta = theta - eta * np.array([2 * theta[0] * theta[1] ** 2, 2 * theta[1] * theta[0] ** 2])
    assert expected > 0 and int(traj.diverged_at) == expected
    assert np.all(np.isnan(traj.loss[expected:])) and np.all(np.isfinite(traj.loss[:expected]))


def test_xy_recursion_records_the_closed_form_step():
    """With α = β = γ = 0, y stays y₀ and |x_t| = |1 + ηy₀|^t |x₀|."""
    eta, y0, x0, max_abs = 0.1, 20.0, 1e-3, 1e6  # factor 3
    traj = edge_model.xy_recursion(x0, y0, eta=eta, alpha=0.0, beta=0.0, steps=40, max_abs=max_abs)
    sizes = np.maximum(x0 * 3.0 ** np.arange(41), y0)
    expected = int(np.argmax(sizes > max_abs))
    assert int(traj.diverged_at) == expected
    np.testing.assert_allclose(np.abs(traj.x[:expected]), x0 * 3.0 ** np.arange(expected), rtol=1e-12)
    assert np.all(np.isnan(traj.x[expected:])) and np.all(np.isnan(traj.y[expected:]))


def test_toy_records_the_first_bad_step():
    toy = edge_model.SharpeningToy(s0=100.0, alpha=5.0, drive=0.01)
    eta, gamma, max_loss = 0.05, 0.0, 1e8
    traj = toy.gd(jnp.array([1.0, 0.0]), eta=eta, gamma=gamma, steps=200, max_loss=max_loss)
    theta, expected = np.array([1.0, 0.0]), -1
    with np.errstate(over="ignore", invalid="ignore"):
        expected = _toy_reference(toy, theta, eta, max_loss)
    assert expected > 0 and int(traj.diverged_at) == expected
    assert np.all(np.isnan(traj.theta[expected:])) and np.all(np.isfinite(traj.theta[:expected]))


def _toy_reference(toy, theta, eta, max_loss):
    for t in range(201):
        x, z = theta
        loss = 0.5 * (toy.s0 + z) * x**2 - toy.alpha * z - toy.drive * x
        if not np.isfinite(loss) or loss > max_loss:
            return t
        theta = theta - eta * np.array([(toy.s0 + z) * x - toy.drive, 0.5 * x**2 - toy.alpha])
    return -1


def test_adaptive_trajectory_records_the_closed_form_step():
    """SGD on ½λw² with ηλ = 3: |w_t| = 2^t |w₀|."""
    lam, eta, max_loss = 6.0, 0.5, 1e6
    run = adaptive.trajectory(lambda w: 0.5 * lam * jnp.sum(w**2), optax.sgd(eta), jnp.array([1.0]), 40,
                              max_loss=max_loss)
    losses = 0.5 * lam * 4.0 ** np.arange(41)
    expected = int(np.argmax(losses > max_loss))
    assert int(run.diverged_at) == expected
    np.testing.assert_allclose(run.loss[:expected], losses[:expected], rtol=1e-12)
    assert np.all(np.isnan(run.w[expected:]))
