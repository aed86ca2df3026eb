"""The projection onto the stable set against dense float64 derivatives."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from eoslib import hessian, models, selfstab


@pytest.fixture
def problem(getkey):
    x = jax.random.normal(getkey(), (20, 4))
    y = jax.random.normal(getkey(), (20, 2))
    params = models.MLP(4, (6,), 2, "tanh", key=getkey())
    loss = lambda p: 0.5 * jnp.mean(jnp.sum((p(x) - y) ** 2, axis=1))
    return params, loss


def dense(loss, params):
    flat, unravel = ravel_pytree(params)
    H = np.asarray(jax.hessian(lambda f: loss(unravel(f)))(flat))
    w, V = np.linalg.eigh(H)
    g = np.asarray(jax.grad(lambda f: loss(unravel(f)))(flat))
    return w[-1], V[:, -1], g


def test_projection_lands_on_the_stable_set(problem, getkey):
    params, loss = problem
    s0, _, _ = dense(loss, params)
    eta = 2.0 / (0.8 * s0)  # the edge is 20% below the current sharpness: both corrections act
    flat, _ = ravel_pytree(params)
    proj = selfstab.project(loss, params, eta, v0=jax.random.normal(getkey(), flat.shape), tol=1e-8, eig_tol=1e-11)
    assert bool(proj.converged)
    s, u, g = dense(loss, proj.params)
    assert s <= (2 / eta) * (1 + 1e-7)
    assert abs(g @ u) <= 1e-7 * np.linalg.norm(g)
    np.testing.assert_allclose(float(proj.sharpness), s, rtol=1e-9)
    assert abs(abs(float(np.asarray(proj.vector) @ u)) - 1) < 1e-8
    # the projection moves the point by a small amount compared with its norm
    moved = np.linalg.norm(np.asarray(ravel_pytree(proj.params)[0] - flat))
    assert 0 < moved < 0.5 * np.linalg.norm(np.asarray(flat))


def test_below_the_edge_only_the_gradient_along_u_is_removed(problem, getkey):
    params, loss = problem
    s0, u0, g0 = dense(loss, params)
    eta = 2.0 / (2.0 * s0)  # far below the edge
    flat, _ = ravel_pytree(params)
    proj = selfstab.project(loss, params, eta, v0=jnp.asarray(u0), tol=1e-9, eig_tol=1e-11)
    s, u, g = dense(loss, proj.params)
    assert abs(g @ u) <= 1e-8 * np.linalg.norm(g)
    assert s < 2 / eta  # still below the edge: no step along ∇S was needed


def test_coordinates(problem):
    params, loss = problem
    flat, unravel = ravel_pytree(params)
    u = jnp.zeros_like(flat).at[0].set(1.0)
    grad_s = unravel(jnp.ones_like(flat))
    shifted = unravel(flat + 0.1 * u + 0.01)
    x, y = selfstab.coordinates(shifted, params, u, grad_s)
    assert float(x) == pytest.approx(0.11)
    assert float(y) == pytest.approx(0.1 + 0.01 * flat.size)


def test_bad_input(problem, getkey):
    params, loss = problem
    flat, _ = ravel_pytree(params)
    with pytest.raises(ValueError, match="eta=0"):
        selfstab.project(loss, params, 0.0, v0=flat)


def test_gd_and_constrained_keeps_the_constrained_trajectory_stable(problem, getkey):
    params, loss = problem
    s0, u0, _ = dense(loss, params)
    eta = 2.0 / (0.9 * s0)  # GD starts just above the edge
    rec = selfstab.gd_and_constrained(loss, params, eta, 30, v0=jnp.asarray(u0), tol=1e-7, eig_tol=1e-8)
    assert rec.loss.shape == (30,)
    assert np.all(np.asarray(rec.converged))
    assert np.all(np.asarray(rec.sharpness_dagger) <= (2 / eta) * (1 + 1e-5))
    assert np.all(np.isfinite(np.asarray(rec.x))) and np.all(np.asarray(rec.beta) > 0)
    # GD itself sits at the edge: above 2/η on average, oscillating along u with period 2
    late = np.asarray(rec.x)[15:]
    assert np.all(np.sign(late[1:]) == -np.sign(late[:-1]))
    assert np.mean(np.asarray(rec.sharpness)[15:]) > 2 / eta
