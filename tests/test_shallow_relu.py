"""eoslib.mechanisms.shallow_relu against dense float64 Hessians, autodiff and closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eoslib.mechanisms import shallow_relu as sr

N, D, M = 4, 5, 12
Y = jnp.array([1.0, 0.8, -0.5, -0.7])


@pytest.fixture
def setup():
    x = sr.orthonormal_inputs(N, D, key=jax.random.key(0))
    net = sr.init(D, M, 0.5, key=jax.random.key(1))  # a moderate scale: generic, away from kinks
    return x, Y, net


def test_inputs_orthonormal_and_checked(setup):
    x, y, _ = setup
    np.testing.assert_allclose(x @ x.T, np.eye(N), atol=1e-12)
    sr.check_data(x, y)
    with pytest.raises(ValueError, match="unbalanced"):
        sr.check_data(x, -y)
    with pytest.raises(ValueError, match="non-zero"):
        sr.check_data(x, y.at[0].set(0.0))
    with pytest.raises(ValueError, match="orthonormal"):
        sr.check_data(2 * x, y)
    with pytest.raises(ValueError, match="n=6, d=5"):
        sr.orthonormal_inputs(6, 5, key=jax.random.key(0))
    with pytest.raises(ValueError, match="scale=1.5"):
        sr.init(D, M, 1.5, key=jax.random.key(0))


def test_balanced_init():
    net = sr.init(D, M, 1e-3, key=jax.random.key(2))
    np.testing.assert_allclose(jnp.linalg.norm(net.w, axis=1), 1e-3, rtol=1e-12)
    np.testing.assert_allclose(jnp.abs(net.a), 1e-3, rtol=1e-12)
    np.testing.assert_allclose(sr.balance(net), 0.0, atol=1e-18)


def test_theta_roundtrip_and_order(setup):
    _, _, net = setup
    th = sr.to_theta(net)
    assert th.shape == (M * (D + 1),)
    np.testing.assert_array_equal(th[: D + 1], jnp.concatenate([net.w[0], net.a[:1]]))
    back = sr.from_theta(th, M, D)
    np.testing.assert_array_equal(back.w, net.w)
    np.testing.assert_array_equal(back.a, net.a)


def test_gd_step_is_gradient_descent(setup):
    x, y, net = setup
    eta = 0.3
    grads = jax.grad(sr.loss)(net, x, y)
    new = sr.gd_step(net, x, y, eta)
    np.testing.assert_allclose(new.w, net.w - eta * grads.w, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(new.a, net.a - eta * grads.a, rtol=1e-12, atol=1e-14)
    # the error vectors are −∂L/∂wⱼ / aⱼ
    np.testing.assert_allclose(sr.error_vectors(net, x, y) * net.a[:, None], -grads.w, atol=1e-14)


def test_balance_identity_exact(setup):
    x, y, net = setup
    for eta in (0.01, 0.3, 2.0):
        new = sr.gd_step(net, x, y, eta)
        inc = sr.balance_increment(net, x, y, eta)
        np.testing.assert_allclose(sr.balance(new) - sr.balance(net), inc, atol=1e-14)
        assert np.all(inc >= -1e-15)  # Cauchy–Schwarz


def test_curvature_matches_dense_hessian(setup):
    x, y, net = setup
    hess = sr.dense_hessian(net, x, y)
    np.testing.assert_allclose(hess, hess.T, atol=1e-12)
    for k in range(3):
        v = sr.Direction(jax.random.normal(jax.random.key(10 + k), (M, D)),
                         jax.random.normal(jax.random.key(20 + k), (M,)))
        np.testing.assert_allclose(sr.curvature(net, x, y, v), v.flat() @ hess @ v.flat(), rtol=1e-10)


def test_lambda_pm_match_dense_rayleigh():
    x = sr.orthonormal_inputs(N, D, key=jax.random.key(3))
    net = None
    for seed in range(50):  # a seed with both sets non-empty
        cand = sr.init(D, 24, 0.4, key=jax.random.key(seed))
        sp, sm = sr.alignment_sets(cand, x, Y)
        if sp.any() and sm.any():
            net = cand
            break
    assert net is not None
    net = sr.gd_step(net, x, Y, 0.5)  # away from init: residuals and weights both non-trivial
    vp, vm = sr.sharp_directions(x, Y, *sr.alignment_sets(net, x, Y))
    hess = sr.dense_hessian(net, x, Y)
    for v in (vp, vm):
        f = v.flat()
        np.testing.assert_allclose(sr.rayleigh(net, x, Y, v), f @ hess @ f / (f @ f), rtol=1e-10)
        assert sr.rayleigh(net, x, Y, v) <= np.linalg.eigvalsh(hess)[-1] + 1e-12


def test_alignment_sets_brute_force(setup):
    x, y, net = setup
    sp, sm = sr.alignment_sets(net, x, y)
    pre = np.asarray(x @ net.w.T)
    for j in range(M):
        exp_p = net.a[j] > 0 and all(pre[k, j] >= 0 for k in range(N) if y[k] > 0)
        exp_m = net.a[j] < 0 and all(pre[k, j] >= 0 for k in range(N) if y[k] < 0)
        assert bool(sp[j]) == bool(exp_p) and bool(sm[j]) == bool(exp_m)


def test_data_vectors_and_directions(setup):
    x, y, _ = setup
    dp, dm = sr.data_vectors(x, y)
    np.testing.assert_allclose(dp, (1.0 * x[0] + 0.8 * x[1]) / N, atol=1e-15)
    np.testing.assert_allclose(dm, (-0.5 * x[2] - 0.7 * x[3]) / N, atol=1e-15)
    mask = jnp.arange(M) % 3 == 0
    vp, _ = sr.sharp_directions(x, y, mask, ~mask)
    np.testing.assert_allclose(vp.q, np.where(mask, np.linalg.norm(dp), 0.0))
    np.testing.assert_allclose(vp.p[0], dp)
    np.testing.assert_array_equal(vp.p[1], 0.0)
    assert np.isnan(sr.rayleigh(sr.init(D, M, 0.5, key=jax.random.key(1)), x, y,
                                sr.Direction(jnp.zeros((M, D)), jnp.zeros(M))))


def test_aligned_plateau_closed_form():
    """At an exact interpolating solution made of balanced neurons aligned with d₊ (resp. −d₋),
    λ₊ = 2(Σⱼ|aⱼ|)² / (n|S₁,₊|) (the residual part vanishes)."""
    n, d = 4, 4
    x = jnp.eye(n, d)
    y = jnp.array([1.0, 2.0, -0.5, -1.0])
    dp, dm = sr.data_vectors(x, y)
    up, um = dp / jnp.linalg.norm(dp), -dm / jnp.linalg.norm(dm)
    # two positive neurons with |a|² = (1/3, 2/3)·n‖d₊‖, one negative with |a|² = n‖d₋‖
    alphas_p = jnp.sqrt(jnp.array([1 / 3, 2 / 3]) * n * jnp.linalg.norm(dp))
    alpha_m = jnp.sqrt(n * jnp.linalg.norm(dm))
    w = jnp.stack([alphas_p[0] * up, alphas_p[1] * up, alpha_m * um])
    a = jnp.array([alphas_p[0], alphas_p[1], -alpha_m])
    net = sr.from_theta(jnp.concatenate([w, a[:, None]], axis=1).reshape(-1), 3, d)
    np.testing.assert_allclose(sr.predict(net, x), y, atol=1e-12)
    sp, sm = jnp.array([True, True, False]), jnp.array([False, False, True])
    vp, vm = sr.sharp_directions(x, y, sp, sm)
    np.testing.assert_allclose(sr.rayleigh(net, x, y, vp), 2 * alphas_p.sum() ** 2 / (n * 2), rtol=1e-12)
    np.testing.assert_allclose(sr.rayleigh(net, x, y, vm), 2 * alpha_m**2 / n, rtol=1e-12)


def test_simulate_records_and_eigenvalues(setup):
    x, y, _ = setup
    net = sr.init(D, M, 0.05, key=jax.random.key(4))
    tr = sr.simulate(net, x, y, 0.4, steps=40, probe_every=10, top_k=3)
    assert tr.loss.shape == (40,) and tr.balance.shape == (40, M) and tr.top_eigenvalues.shape == (4, 3)
    assert int(tr.diverged_at) == -1
    np.testing.assert_array_equal(tr.probe_step, [0, 10, 20, 30])
    assert np.max(tr.balance_identity_error) < 1e-14
    # replay by hand: step-20 parameters, their dense spectrum and Rayleigh quotients
    cur = net
    for _ in range(20):
        cur = sr.gd_step(cur, x, y, 0.4)
    evals = np.linalg.eigvalsh(sr.dense_hessian(cur, x, y))[::-1][:3]
    np.testing.assert_allclose(tr.top_eigenvalues[2], evals, rtol=1e-10, atol=1e-12)
    vp, vm = sr.sharp_directions(x, y, *sr.alignment_sets(net, x, y))
    np.testing.assert_allclose(tr.lambda_plus[20], sr.rayleigh(cur, x, y, vp), rtol=1e-10)
    np.testing.assert_allclose(tr.loss[20], sr.loss(cur, x, y), rtol=1e-12)
    # vmappable over the step size
    batch = jax.vmap(lambda e: sr.simulate(net, x, y, e, steps=40, probe_every=10, top_k=3))(jnp.array([0.1, 0.4]))
    np.testing.assert_allclose(batch.loss[1], tr.loss, rtol=1e-12)


def test_simulate_divergence_recorded_not_raised(setup):
    x, y, _ = setup
    net = sr.init(D, M, 0.9, key=jax.random.key(5))
    tr = sr.simulate(net, x, y, 1e4, steps=60, probe_every=20, top_k=2)
    assert int(tr.diverged_at) >= 0
    assert np.all(np.isnan(tr.loss[int(tr.diverged_at):]))
    with pytest.raises(ValueError, match="probe_every"):
        sr.simulate(net, x, y, 0.1, steps=45, probe_every=10)


def test_fit_logistic_recovers_parameters():
    t = np.arange(300.0)
    v = sr.logistic(t, 0.12, 140.0, 0.8, -0.2) + 1e-4 * np.random.default_rng(0).normal(size=t.size)
    fit = sr.fit_logistic(t, v)
    assert abs(fit.rate / 0.12 - 1) < 0.02 and abs(fit.midpoint - 140) < 0.5 and fit.r2 > 0.999
    assert np.isnan(sr.fit_logistic(t, np.zeros_like(t)).rate)
    assert sr.first_crossing(t, v, 0.3) == pytest.approx(140, abs=5)
    assert np.isnan(sr.first_crossing(t, v, 5.0))


def test_upper_bound_ratio_counts_a_non_positive_maximum_as_untested():
    assert sr.upper_bound_ratio(0.5, 2.0) == 0.25
    assert sr.upper_bound_ratio(3.0, 2.0) == 1.5  # the bound fails: tested
    assert np.isnan(sr.upper_bound_ratio(-0.3, 2.0))  # λ± below 0: holds by sign alone
    assert np.isnan(sr.upper_bound_ratio(0.0, 2.0))
    assert np.isnan(sr.upper_bound_ratio(float("nan"), 2.0))  # an empty phase
