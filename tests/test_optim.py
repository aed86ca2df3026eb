"""Clipped-Ada against optax.adam, a hand computation and a float64 NumPy reference of its formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from eoslib.engine import optim


def run(opt, grads_seq, params):
    state = opt.init(params)
    out = []
    for g in grads_seq:
        updates, state = opt.update(g, state, params)
        params = optax.apply_updates(params, updates)
        out.append(params)
    return out, state


@pytest.fixture
def grads_seq():
    keys = jax.random.split(jax.random.key(0), 6)
    return [{"w": jax.random.normal(k, (4, 3)), "b": jax.random.normal(k, (3,)) * 10} for k in keys]


def test_tau_inf_is_exactly_adam(grads_seq):
    params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
    ours, _ = run(optim.clipped_adam(1e-2), grads_seq, params)
    ref, _ = run(optax.adam(1e-2), grads_seq, params)
    for a, b in zip(ours, ref):
        jax.tree.map(np.testing.assert_array_equal, a, b)


def test_small_tau_matches_hand_computation():
    b1, b2, eps, tau, lr = 0.9, 0.999, 1e-8, 0.25, 0.1
    opt = optim.clipped_adam(lr, tau=tau, b1=b1, b2=b2, eps=eps)
    params = jnp.array([1.0, 1.0])
    g1, g2 = jnp.array([2.0, 0.1]), jnp.array([-1.0, 0.2])
    state = opt.init(params)
    u1, state = opt.update(g1, state)
    u2, state = opt.update(g2, state)
    m, v = np.zeros(2), np.zeros(2)
    expected = []
    for t, g in enumerate([np.array([2.0, 0.1]), np.array([-1.0, 0.2])], start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        expected.append(-lr * m_hat / (np.sqrt(np.minimum(v_hat, tau)) + eps))
    np.testing.assert_allclose(u1, expected[0], rtol=1e-6)
    np.testing.assert_allclose(u2, expected[1], rtol=1e-6)
    # the large coordinate is clipped (v̂ = 4 > τ) and so steps further than Adam would
    assert abs(float(u1[0])) > lr * 1.0


def numpy_clipped_ada(grads_seq, params, lr, tau, b1=0.9, b2=0.999, eps=1e-8):
    """The update formulas of the module docstring, written out in float64 NumPy, leaf by leaf:
    ``m ← β₁m + (1−β₁)g``, ``v ← β₂v + (1−β₂)g²``, ``θ ← θ − η m̂ / (√min(v̂, τ) + ε)``.
    Returns the parameters after each step, and the last ``v̂`` and preconditioner."""
    theta = {k: np.array(a, np.float64) for k, a in params.items()}
    m = {k: np.zeros_like(a) for k, a in theta.items()}
    v = {k: np.zeros_like(a) for k, a in theta.items()}
    history, v_hat, P = [], {}, {}
    for t, grads in enumerate(grads_seq, start=1):
        for k in theta:
            g = np.asarray(grads[k], np.float64)
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g**2
            m_hat = m[k] / (1 - b1**t)
            v_hat[k] = v[k] / (1 - b2**t)
            P[k] = np.sqrt(np.minimum(v_hat[k], tau)) + eps
            theta[k] = theta[k] - lr * m_hat / P[k]
        history.append({k: a.copy() for k, a in theta.items()})
    return history, v_hat, P


def test_rmsprop_matches_a_numpy_reference(grads_seq):
    """RMSprop (β₁ = 0, bias-corrected) with the τ cap, step by step against float64 NumPy."""
    params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
    ours, _ = run(optim.clipped_rmsprop(1e-2, tau=1.0), grads_seq, params)
    ref, v_hat, _ = numpy_clipped_ada(grads_seq, params, 1e-2, 1.0, b1=0.0)
    flat_v = np.concatenate([a.ravel() for a in v_hat.values()])
    assert flat_v.min() < 1.0 < flat_v.max()  # τ = 1 caps some of the w entries and every b entry, not the rest
    for a, b in zip(ours, ref):
        for k in b:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-13, atol=1e-15)
    # and it is Clipped-Ada on Adam with β₁ = 0, as the paper defines it
    adam0, _ = run(optim.clipped_adam(1e-2, tau=1.0, b1=0.0), grads_seq, params)
    jax.tree.map(np.testing.assert_array_equal, ours[-1], adam0[-1])


def test_clipped_adam_and_its_preconditioner_match_a_numpy_reference(grads_seq):
    """The steps and P = √min(v̂, τ) + ε from optim.preconditioner, against float64 NumPy."""
    params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
    opt = optim.clipped_adam(0.1, tau=1.0)
    ours, state = run(opt, grads_seq, params)
    ref, v_hat, P_ref = numpy_clipped_ada(grads_seq, params, 0.1, 1.0)
    flat_v = np.concatenate([a.ravel() for a in v_hat.values()])
    assert flat_v.min() < 1.0 < flat_v.max()
    for a, b in zip(ours, ref):
        for k in b:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-13, atol=1e-15)
    P = optim.preconditioner(state, tau=1.0)
    nu_hat = optim.bias_corrected_nu(state)
    for k in P_ref:
        np.testing.assert_allclose(P[k], P_ref[k], rtol=1e-14)
        np.testing.assert_allclose(nu_hat[k], v_hat[k], rtol=1e-14)


def test_bad_tau():
    with pytest.raises(ValueError, match="tau=0"):
        optim.clipped_adam(0.1, tau=0)


def test_schedules():
    s = optim.step_decay(0.1, at=5, factor=0.2)
    assert float(s(4)) == pytest.approx(0.1) and float(s(5)) == pytest.approx(0.02)
    w = optim.linear_warmup(0.1, 10)
    assert float(w(5)) == pytest.approx(0.05) and float(w(20)) == pytest.approx(0.1)


def test_decay_off_sharpness_gradient_removes_exactly_the_nabla_s_component():
    A = jnp.diag(jnp.array([5.0, 1.0, 0.5, 0.2]))
    loss = lambda p: 0.5 * p["w"] @ A @ p["w"] + 0.1 * jnp.sum(p["w"] ** 4) + 0.3 * p["w"][0] ** 2 * p["w"][1]
    params = {"w": jnp.array([0.4, -0.3, 0.2, 0.5])}
    gamma = 0.07
    tx = optim.decay_off_sharpness_gradient(lambda p, batch: loss(p) * batch, gamma, power_iters=200)
    grads = jax.grad(loss)(params)
    updates, state = tx.update(grads, tx.init(params), params, batch=1.0)
    w = params["w"]
    H = jax.hessian(lambda u: loss({"w": u}))(w)
    v = jnp.linalg.eigh(H)[1][:, -1]
    grad_s = jax.grad(lambda u: v @ jax.hessian(lambda q: loss({"w": q}))(u) @ v)(w)
    n = grad_s / jnp.linalg.norm(grad_s)
    expected = grads["w"] + gamma * (w - (w @ n) * n)
    np.testing.assert_allclose(updates["w"], expected, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(state.c_y, w @ grad_s, rtol=1e-8)
    assert abs(float((updates["w"] - grads["w"]) @ grad_s)) < 1e-10  # no decay along ∇S
    with pytest.raises(ValueError, match="power_iters"):
        optim.decay_off_sharpness_gradient(loss, gamma, power_iters=0)
    with pytest.raises(ValueError, match="batch"):
        tx.update(grads, tx.init(params), params)
    with pytest.raises(ValueError, match="every"):
        optim.decay_off_sharpness_gradient(loss, gamma, every=0)
    # with every=3 the direction is refreshed on updates 0, 3, 6, … and held in between
    slow = optim.decay_off_sharpness_gradient(lambda p, batch: loss(p), gamma, power_iters=200, every=3)
    st = slow.init(params)
    _, st = slow.update(grads, st, params, batch=0.0)
    moved = {"w": params["w"] + 0.05}
    up1, st1 = slow.update(jax.grad(loss)(moved), st, moved, batch=0.0)
    np.testing.assert_array_equal(st1.n, st.n)
    _, st2 = slow.update(jax.grad(loss)(moved), st1, moved, batch=0.0)
    _, st3 = slow.update(jax.grad(loss)(moved), st2, moved, batch=0.0)
    assert not np.allclose(st3.n, st.n)
    # under jit with sgd, as the training loop uses it
    chained = optax.chain(tx, optax.sgd(0.1))
    step = jax.jit(lambda p, s: chained.update(jax.grad(loss)(p), s, p, batch=1.0))
    up, _ = step(params, chained.init(params))
    np.testing.assert_allclose(up["w"], -0.1 * expected, rtol=1e-6)


def test_step_decay_by_factor_or_to_a_value():
    s = optim.step_decay(0.1, at=3, to=0.01)
    assert [float(s(c)) for c in (0, 2, 3, 9)] == pytest.approx([0.1, 0.1, 0.01, 0.01])
    never = optim.step_decay(0.1, at=float("inf"), factor=0.2)
    assert float(never(10**6)) == pytest.approx(0.1)


def test_step_decay_sweeps_the_switch_step_under_vmap():
    """at, factor and η may be traced: one vmap over the switch step (and η), no int() on a tracer."""
    ats = jnp.array([2.0, 5.0, jnp.inf])
    etas = jnp.array([0.1, 0.2, 0.3])
    counts = jnp.arange(8)
    lr = jax.jit(jax.vmap(lambda a, e: jax.vmap(optim.step_decay(e, a, factor=0.5))(counts)))(ats, etas)
    expected = np.where(np.arange(8)[None, :] < np.array([2, 5, np.inf])[:, None],
                        np.array([0.1, 0.2, 0.3])[:, None], 0.5 * np.array([0.1, 0.2, 0.3])[:, None])
    np.testing.assert_allclose(lr, expected, rtol=1e-6)
    # inside optax: SGD whose step drops at a traced step
    def first_update(a):
        tx = optax.sgd(optim.step_decay(1.0, a, factor=0.1))
        return tx.update(jnp.ones(2), tx.init(jnp.ones(2)))[0]

    updates = jax.vmap(first_update)(jnp.array([0.0, 1.0]))
    np.testing.assert_allclose(updates, [[-0.1, -0.1], [-1.0, -1.0]], rtol=1e-6)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"at": -1, "factor": 0.5}, "at=-1 is not allowed"),
    ({"at": 3, "factor": -0.5}, "factor=-0.5 is not allowed"),
    ({"at": 3}, "exactly one of factor= and to="),
    ({"at": 3, "factor": 0.5, "to": 0.1}, "exactly one of factor= and to="),
])
def test_step_decay_bad_input(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        optim.step_decay(0.1, **kwargs)
