"""The projection onto the stable set against dense float64 derivatives."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from eoslib.engine import hessian, models
from eoslib.mechanisms import selfstab


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


def test_a_point_within_the_tolerances_still_loses_its_gradient_along_u(problem, getkey):
    """Far below the edge and with a loose tolerance the start already meets both constraints;
    the projection still makes one round, θ† = θ − (∇L·u/S) u, so x = u·(θ − θ†) is not 0
    (x = 0 would be a fixed point of the recursion: its prediction could never leave it)."""
    params, loss = problem
    s0, u0, g0 = dense(loss, params)
    eta = 2.0 / (2.0 * s0)
    tol = 0.99
    assert abs(g0 @ u0) <= tol * np.linalg.norm(g0)  # the start is within the tolerances
    flat, _ = ravel_pytree(params)
    proj = selfstab.project(loss, params, eta, v0=jnp.asarray(u0), tol=tol, eig_tol=1e-11)
    assert int(proj.iterations) == 1 and bool(proj.converged)
    moved = np.asarray(flat - ravel_pytree(proj.params)[0])
    np.testing.assert_allclose(moved, (g0 @ u0) / s0 * u0, rtol=1e-6, atol=1e-12)
    assert abs(g0 @ u0) / s0 > 1e-3  # so x = u·(θ − θ†) at θ† is far from 0


def test_coordinates(problem):
    params, loss = problem
    flat, unravel = ravel_pytree(params)
    u = jnp.zeros_like(flat).at[0].set(1.0)
    grad_s = unravel(jnp.ones_like(flat))
    shifted = unravel(flat + 0.1 * u + 0.01)
    x, y = selfstab.coordinates(shifted, params, u, grad_s)
    assert float(x) == pytest.approx(0.11)
    # y uses ∇S⊥ = ∇S − (∇S·u)u = (0, 1, 1, ...): the displacement along u does not enter it
    assert float(y) == pytest.approx(0.01 * (flat.size - 1), rel=1e-5)


def test_y_does_not_flip_with_x(problem):
    """A displacement x·u along the top eigenvector leaves y unchanged whatever ∇S·u is: with the
    full ∇S, y = ∇S·v would pick up x (∇S·u), which flips sign with x every step at the edge."""
    params, _ = problem
    flat, unravel = ravel_pytree(params)
    u = jnp.zeros_like(flat).at[0].set(0.6).at[1].set(0.8)
    grad_s = unravel(jnp.arange(flat.size, dtype=flat.dtype) / flat.size + 2.0 * u)  # ∇S·u ≠ 0
    w = unravel(flat + 0.01 * jnp.sin(jnp.arange(flat.size, dtype=flat.dtype)))
    ys = [float(selfstab.coordinates(unravel(ravel_pytree(w)[0] + x * u), params, u, grad_s)[1])
          for x in (-0.5, 0.0, 0.5)]
    np.testing.assert_allclose(ys, ys[1], rtol=1e-5)
    perp = selfstab.orthogonal_part(ravel_pytree(grad_s)[0], u)
    assert abs(float(jnp.vdot(perp, u))) < 1e-5


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


# A cubic loss on which the two-term recursion is exact: θ = (a, b, z) with
#   L = ½ (λ + k b) a² − g b + ½ c z².
# On M (a = 0) u = e_a, S = λ + k b, ∇S = (0, k, 0), α = g k, β = k²; GD's a-update is
# a ← (1 − η S(θ†) − η k (b − b†)) a and its b-update b ← b + η g − η k a²/2, so with x = a and
# y = k (b − b†) the recursion of `selfstab.predict` is GD itself, below and at the edge.
LAM, K, G, C = 1.0, 2.0, 0.01, 0.3


def cubic(theta, quartic=0.0):
    a, b, z = theta
    return 0.5 * (LAM + K * b) * a**2 - G * b + 0.5 * C * z**2 + quartic * a**4 / 24


def test_recursion_is_exact_on_the_cubic_loss():
    eta = 2.0 / 3.0  # edge 2/η = 3, reached when b = 1
    theta0 = jnp.array([1e-3, 0.8, 1.0])
    steps = 150  # one cycle; later ones start from |x| ~ 1e-25 and overshoot the cubic's basin
    rec = selfstab.gd_and_constrained(cubic, theta0, eta, steps, v0=jnp.array([1.0, 0.1, 0.0]), tol=1e-12,
                                      eig_tol=1e-12, record_eig_tol=1e-12)
    assert np.all(np.asarray(rec.converged))
    np.testing.assert_allclose(rec.alpha, G * K, rtol=1e-9)
    np.testing.assert_allclose(rec.beta, K**2, rtol=1e-9)
    assert np.max(np.asarray(rec.sharpness_dagger)) <= 3.0 * (1 + 1e-10)
    pred = selfstab.predict(rec.x[0], rec.y[0], rec.alpha, rec.beta, rec.sharpness_dagger, eta)
    np.testing.assert_allclose(pred.x, rec.x, atol=1e-9)
    np.testing.assert_allclose(pred.y, rec.y, atol=1e-9)
    # the run goes through the four stages at least once: y > 0 and |x| growing, then x² above
    # 2α/β and y falling, then y < 0 and |x| shrinking
    x, y = np.asarray(rec.x), np.asarray(rec.y)
    peak = np.argmax(np.abs(x))
    assert np.abs(x[peak]) > 100 * np.abs(x[0]) and x[peak] ** 2 > 2 * G / K
    assert np.max(y[:peak]) > 0 and np.min(y[peak:]) < 0
    # the loss decomposes as L(θ†) + S† x²/2 exactly on this loss, up to the linear term in b − b†
    np.testing.assert_allclose(rec.loss, rec.loss_dagger + 0.5 * rec.sharpness_dagger * rec.x**2
                               + 0.5 * K * (rec.y / K) * rec.x**2 - G * rec.y / K, atol=1e-12)


@pytest.mark.parametrize("quartic", [0.0, 3.0])
def test_one_step_error_is_of_the_order_the_recursion_neglects(quartic):
    """With a quartic term q a⁴/24 the recursion drops η q x³/6 from x's update: the one-step
    error falls 8× when the displacement halves (third order), and vanishes on the cubic."""
    eta = 2.0 / 3.0
    errors = []
    for eps in (1e-2, 5e-3):
        loss = lambda t: cubic(t, quartic)
        rec = selfstab.gd_and_constrained(loss, jnp.array([eps, 1.2, 1.0]), eta, 2, v0=jnp.array([1.0, 0.0, 0.0]),
                                          tol=1e-13, eig_tol=1e-13, record_eig_tol=1e-12)
        pred = selfstab.predict(rec.x[0], rec.y[0], rec.alpha, rec.beta, rec.sharpness_dagger, eta)
        errors.append(abs(float(pred.x[1] - rec.x[1])))
    if quartic == 0.0:
        assert max(errors) < 1e-12  # rounding only (x ~ 1e-2)
    else:
        assert errors[0] / errors[1] == pytest.approx(8.0, rel=0.05)
        assert errors[0] == pytest.approx(eta * quartic * 1e-6 / 6, rel=0.05)


def test_central_flow_holds_the_edge_with_the_predicted_variance():
    eta = 2.0 / 3.0
    rec, final = selfstab.central_flow(cubic, jnp.array([0.0, 0.9, 1.0]), eta, 60, v0=jnp.array([1.0, 0.0, 0.0]),
                                       substeps=4, eig_tol=1e-12)
    s, sigma2 = np.asarray(rec.sharpness), np.asarray(rec.sigma2)
    # below the edge the flow is gradient flow: b rises at rate ηg, S = λ + kb at rate ηgk
    np.testing.assert_allclose(s[:4], LAM + K * (0.9 + eta * G * np.arange(4)), rtol=1e-9)
    assert np.all(sigma2[:4] == 0)
    # at the edge: S stays at 2/η and σ² = 2α/β = 2g/k, the averaged fixed point of x²
    # (the edge b = 1 is reached after 0.1/(ηg) = 15 units of time)
    assert not (s[:14] >= 3.0).any() and (s[16:] >= 3.0).all()
    # entering the edge overshoots by about one step's sharpening (η α dt = 3e-3); the restoring
    # term then pulls S back at rate relax = 0.1 per unit time, so the overshoot decays as e^{−0.1 t}
    assert np.all(np.abs(s[16:] - 3.0) <= 4e-3) and abs(s[-1] - 3.0) < 1e-4
    assert np.all(np.diff(s[17:]) <= 1e-12)
    np.testing.assert_allclose(sigma2[-10:], 2 * G / K, rtol=1e-2)
    np.testing.assert_allclose(rec.predicted_loss, rec.loss + 0.5 * sigma2 * s, rtol=1e-12)  # = L + σ²/η at S = 2/η
    # the z direction decays as in gradient flow, exp(−η c t), by Heun's map 1 + h + h²/2 per step
    h = -eta * C / 4
    assert float(final[2]) == pytest.approx((1 + h + h**2 / 2) ** 240, rel=1e-9)
    assert float(final[2]) == pytest.approx(np.exp(-eta * C * 60), rel=1e-2)


def test_central_flow_records_the_variance_it_applied():
    """On the cubic loss b moves only by the flow's drift, db/dt = η(g − ½ k σ²), so over each
    unit of time S = λ + k b changes by η k (g − ½ k σ̄²) with σ̄² the σ² the integrator applied
    there: the recorded σ² must be that one, also in the unit where S crosses 2/η (the formula at
    the unit's start, below the edge, gives 0 there)."""
    eta = 2.0 / 3.0
    rec, _ = selfstab.central_flow(cubic, jnp.array([0.0, 0.9, 1.0]), eta, 40, v0=jnp.array([1.0, 0.0, 0.0]),
                                   substeps=2, eig_tol=1e-12)
    s, sigma2 = np.asarray(rec.sharpness), np.asarray(rec.sigma2)
    np.testing.assert_allclose(np.diff(s), eta * K * (G - 0.5 * K * sigma2[:-1]), rtol=1e-9, atol=1e-14)
    entry = int(np.argmax(s[1:] >= 3.0))  # the unit from below the edge to above it
    assert s[entry] < 3.0 and 0 < sigma2[entry] < 2 * G / K
    assert np.all(sigma2[entry + 1:] > 0)


def test_central_flow_converges_with_the_step(problem, getkey):
    params, loss = problem
    s0, u0, _ = dense(loss, params)
    eta = 2.0 / (1.2 * s0)  # sharpening reaches the edge during the run
    runs = [np.asarray(selfstab.central_flow(loss, params, eta, 20, v0=jnp.asarray(u0), substeps=m,
                                             eig_tol=1e-10)[0].loss) for m in (4, 8, 16)]
    # Heun is second order: halving dt cuts the change by 4 in the limit (4.6 here, with the
    # switch onto the edge inside the run; at dt = 1/2 the ratio is still 5.6)
    ratio = np.max(np.abs(runs[0] - runs[1])) / np.max(np.abs(runs[1] - runs[2]))
    assert 3.0 < ratio < 6.0


def test_sweep_over_step_sizes_under_vmap(problem):
    params, loss = problem
    s0, u0, _ = dense(loss, params)
    etas = jnp.array([2.0 / (0.9 * s0), 2.0 / (0.8 * s0)])
    sweep = jax.vmap(lambda e: selfstab.gd_and_constrained(loss, params, e, 10, v0=jnp.asarray(u0), tol=1e-7,
                                                           eig_tol=1e-8))(etas)
    single = selfstab.gd_and_constrained(loss, params, float(etas[1]), 10, v0=jnp.asarray(u0), tol=1e-7, eig_tol=1e-8)
    assert sweep.x.shape == (2, 10)
    np.testing.assert_allclose(sweep.sharpness_dagger[1], single.sharpness_dagger, rtol=1e-6)
    assert np.all(np.asarray(sweep.sharpness_dagger) <= (2 / etas[:, None]) * (1 + 1e-5))


def test_gd_to_edge_stops_at_the_fraction(problem, getkey):
    params, loss = problem
    s0, _, _ = dense(loss, params)
    eta = 2.0 / (3 * s0)
    p, t, s = selfstab.gd_to_edge(loss, params, eta, 0.2, 500, key=getkey(), check_every=5)
    assert int(t) == 0 and float(s) >= 0.2 * 2 / eta  # already past 20% of the edge: no step taken
    with pytest.raises(ValueError, match="check_every=0"):
        selfstab.gd_to_edge(loss, params, eta, 0.9, 10, key=getkey(), check_every=0)


def test_edge_sweep_is_the_three_stage_pipeline_per_step_size(problem, getkey):
    """edge_sweep = gd_to_edge → eigensolve → gd_and_constrained, vmapped over η, rows in order."""
    params, loss = problem
    s0, _, _ = dense(loss, params)
    etas = jnp.array([2.0 / (1.5 * s0), 2.0 / (1.2 * s0)])  # edges 50% and 20% above S(θ0)
    key = getkey()
    out = selfstab.edge_sweep(loss, params, etas, 6, start_fraction=0.97, max_warmup=400, key=key,
                              proj_tol=1e-7, eig_tol=1e-9)
    assert out.record.x.shape == (2, 6) and out.start_vectors.shape[0] == 2
    for i, eta in enumerate(np.asarray(etas)):
        start, warm, s_start = selfstab.gd_to_edge(loss, params, float(eta), 0.97, 400, key=key)
        assert int(out.warmup_steps[i]) == int(warm)
        np.testing.assert_allclose(float(out.start_sharpness[i]), float(s_start), rtol=1e-6)
        v0 = hessian.eigsh(loss, start, 1, key=jax.random.fold_in(key, 1), tol=1e-9, max_restarts=20).vectors[:, 0]
        single = selfstab.gd_and_constrained(loss, start, float(eta), 6, v0=v0, tol=1e-7, eig_tol=1e-9)
        np.testing.assert_allclose(out.record.loss[i], single.loss, rtol=1e-6)
        np.testing.assert_allclose(out.record.sharpness_dagger[i], single.sharpness_dagger, rtol=1e-6)
    assert np.all(np.asarray(out.start_sharpness) >= 0.97 * 2 / etas) or np.any(out.warmup_steps >= 400)
    with pytest.raises(ValueError, match="start_fraction=1.5"):
        selfstab.edge_sweep(loss, params, etas, 6, start_fraction=1.5, max_warmup=10, key=key)


def numpy_gd_to_edge(theta, eta, fraction, max_steps, check_every):
    """gd_to_edge's loop in plain Python/NumPy on the cubic loss, with its gradient and Hessian
    written out: GD in blocks of ``check_every`` steps until λ₁ ≥ fraction · 2/η or max_steps."""
    def grad(t):
        a, b, z = t
        return np.array([(LAM + K * b) * a, 0.5 * K * a**2 - G, C * z])

    def sharpness(t):
        a, b, z = t
        return np.linalg.eigvalsh(np.array([[LAM + K * b, K * a, 0], [K * a, 0, 0], [0, 0, C]]))[-1]

    theta, steps = np.array(theta, np.float64), 0
    s = sharpness(theta)
    checked = [(s, 0)]
    while s < fraction * 2 / eta and steps < max_steps:
        for _ in range(check_every):
            theta = theta - eta * grad(theta)
        steps += check_every
        s = sharpness(theta)
        checked.append((s, steps))
    numpy_gd_to_edge.minimum = min(checked)
    return theta, steps, s


@pytest.mark.parametrize("max_steps", [500, 50])
def test_gd_to_edge_iterates_until_the_fraction_like_a_numpy_reference(max_steps):
    """From S = 1.4, far below 0.9 · 2/η = 2.7, GD on the cubic loss sharpens (b grows by ηg per
    step, S ≈ λ + k b) and reaches the target after about 100 steps: 20 passes of the loop.
    With max_steps = 50 the loop stops there instead, below the target."""
    eta, fraction, theta0 = 2.0 / 3.0, 0.9, [1e-3, 0.2, 1.0]
    ref_theta, ref_steps, ref_s = numpy_gd_to_edge(theta0, eta, fraction, max_steps, 5)
    p, t, s = selfstab.gd_to_edge(cubic, jnp.array(theta0), eta, fraction, max_steps, key=jax.random.key(0),
                                  check_every=5, eig_tol=1e-10)
    assert int(t) == ref_steps
    np.testing.assert_allclose(p, ref_theta, rtol=1e-12)
    assert float(s) == pytest.approx(ref_s, rel=1e-9)
    # with_minimum: the same run, plus the smallest checked S and where (the sharpening's start)
    *_, s_min, t_min = selfstab.gd_to_edge(cubic, jnp.array(theta0), eta, fraction, max_steps,
                                           key=jax.random.key(0), check_every=5, eig_tol=1e-10,
                                           with_minimum=True)
    ref_min, ref_t_min = numpy_gd_to_edge.minimum
    assert float(s_min) == pytest.approx(ref_min, rel=1e-9) and int(t_min) == ref_t_min
    assert float(s_min) < float(s)
    if max_steps == 500:
        assert ref_steps == 100 and ref_s >= fraction * 2 / eta
        # the step before was still below: the loop stopped at the first check past the target
        assert numpy_gd_to_edge(theta0, eta, fraction, 95, 5)[2] < fraction * 2 / eta
    else:
        assert ref_steps == 50 and ref_s < fraction * 2 / eta


def test_analyse_edge_on_the_cubic_loss_beats_the_null_predictors():
    """On the cubic loss the recursion is GD itself: the predicted excess loss (up to the linear
    term the expansion drops) and sharpness beat the null predictors L(θ†) and 2/η."""
    eta = 2.0 / 3.0
    rec = selfstab.gd_and_constrained(cubic, jnp.array([1e-3, 0.8, 1.0]), eta, 150,
                                      v0=jnp.array([1.0, 0.1, 0.0]), tol=1e-12, eig_tol=1e-12,
                                      record_eig_tol=1e-12)
    out = selfstab.analyse_edge(rec, eta, margin=1e-6)
    m = out.metrics
    assert out.start is not None and 0 < out.start < 150 and m["edge_steps"] == 150 - out.start
    assert m["gd_diverged"] == 0 and m["prediction_diverged"] == 0
    assert m["sharpness_err"] < 1e-6 < m["sharpness_null_err"]
    assert m["deviation_err"] < 1e-6 < m["deviation_null_err"]
    assert m["stage_x"] > 0.9 and m["cycles"] >= 1
    # the edge never reached: everything after the edge is not measured (NaN)
    below = selfstab.analyse_edge(rec, eta / 2, margin=1e-6)
    assert below.start is None and below.metrics["edge_steps"] == 0
    assert all(np.isnan(below.metrics[k]) for k in selfstab.EDGE_METRICS)
    # a run that diverged in the edge phase: errors are ∞ (rejected), never NaN
    broken = rec._replace(loss=np.where(np.arange(150) > 120, np.inf, np.asarray(rec.loss)))
    bad = selfstab.analyse_edge(broken, eta, margin=1e-6).metrics
    assert bad["gd_diverged"] == 1 and bad["excess_loss_err"] == np.inf and bad["x2_ratio"] == np.inf
    with pytest.raises(ValueError, match="margin=1.5"):
        selfstab.analyse_edge(rec, eta, margin=1.5)
    # a λ₂ stop inside the edge phase: the errors compare the prediction with GD up to the stop
    # (the open-loop prediction itself runs on to the end); a finite prediction made this a
    # shape mismatch once (make book, self-stabilization at book scale)
    stop = out.start + 20
    second = np.where(np.arange(150) == stop, 2.0 / eta, np.nan)
    cut = selfstab.analyse_edge(rec._replace(second_dagger=second), eta, margin=1e-6,
                                second_limit=0.9)
    assert cut.metrics["second_step"] == stop and cut.metrics["edge_steps"] == 20
    assert len(cut.sharpness_hat) == 150 - out.start
    assert cut.metrics["sharpness_err"] < 1e-6 < cut.metrics["sharpness_null_err"]
    assert cut.metrics["deviation_err"] < 1e-6


def test_moving_average_and_flow_errors():
    np.testing.assert_allclose(selfstab.moving_average(np.arange(5.0), 3), [np.nan, 1, 2, 3, np.nan])
    flow = selfstab.FlowRecord(*(np.ones(6) for _ in range(7)))
    flow = flow._replace(predicted_loss=2 * np.ones(6), sharpness=3 * np.ones(6))
    out = selfstab.flow_errors(2 * np.ones(6), 3 * np.ones(6), flow, 2 / 3, start=0, window=2)
    assert out["flow_loss_err"] == 0 and out["flow_plain_err"] == 0.5 and out["flow_sharp_err"] == 0
    assert np.isnan(selfstab.flow_errors(np.ones(6), np.ones(6), flow, 2 / 3, start=None,
                                         window=2)["flow_loss_err"])
    diverged = selfstab.flow_errors(np.ones(6), np.ones(6), flow._replace(loss=np.full(6, np.nan)),
                                    2 / 3, start=0, window=2)
    assert diverged["flow_loss_err"] == np.inf
    with pytest.raises(ValueError, match="window=0"):
        selfstab.moving_average(np.ones(3), 0)


# ----------------------------------------------------------------------------- predicted dynamics


def dense_predicted_step(loss, params, v, eta):
    """Damian et al.'s update of v at θ† = params, from dense float64 derivatives: the Hessian,
    its top eigenvector and ∇S_i = Σ_jk ∂³L/∂θ_i∂θ_j∂θ_k u_j u_k (the full third-derivative tensor)."""
    flat, unravel = ravel_pytree(params)
    f = lambda t: loss(unravel(t))
    H = np.asarray(jax.hessian(f)(flat), np.float64)
    T3 = np.asarray(jax.jacfwd(jax.hessian(f))(flat), np.float64)
    g = np.asarray(jax.grad(f)(flat), np.float64)
    w, V = np.linalg.eigh(H)
    u = V[:, -1]
    gs = np.einsum("ijk,j,k->i", T3, u, u)
    perp = gs - (gs @ u) * u
    alpha, beta = -g @ perp, perp @ perp
    x, y = u @ v, perp @ v
    return v - eta * (H @ v + 0.5 * (x**2 - 2 * alpha / beta) * perp + x * y * u), u, g, gs


def test_predicted_step_against_dense_float64(problem, getkey):
    params, loss = problem
    flat, unravel = ravel_pytree(params)
    s0, _, _ = dense(loss, params)
    eta = 2.0 / s0
    v = 1e-2 * np.asarray(jax.random.normal(getkey(), flat.shape), np.float64)
    ref, u, g, gs = dense_predicted_step(loss, params, v, eta)
    got = selfstab.predicted_step(loss, params, jnp.asarray(v), jnp.asarray(u), jnp.asarray(g), jnp.asarray(gs), eta)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-10, atol=1e-13)
    # the same step in float32 (the book's precision) stays within float32 rounding of the reference
    p32 = jax.tree.map(lambda a: a.astype(jnp.float32) if eqx_array(a) else a, params)
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    got32 = selfstab.predicted_step(loss, p32, f32(v), f32(u), f32(g), f32(gs), np.float32(eta))
    assert got32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got32, np.float64), ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    # and the step differs from the scalar model's by the part of H v it drops
    scalar = v - eta * (s0 * (u @ v) * u)
    assert np.linalg.norm(ref - scalar) > 1e-3 * np.linalg.norm(v)


def eqx_array(a):
    return isinstance(a, jax.Array) and jnp.issubdtype(a.dtype, jnp.floating)


def test_predicted_dynamics_is_gd_on_the_cubic_loss():
    """On the cubic loss at the edge the predicted update is GD's own (H v = S† x e_a + C z e_z,
    ½∇³L[v, v] = ½ k a² e_b + k a (b − b†) e_a and θ† sits at b = b_edge): the prediction,
    started from GD's displacement at the edge step, follows GD to rounding. The update assumes
    θ† sits at the edge, so that the projection takes back the whole sharpening step ηα: the edge
    step is the first where the projection lowered S(θ†) onto 2/η, even with a loose margin
    (from a θ† within the margin but still below 2/η, the prediction's sharpness would carry the
    sharpening the projection did not take back)."""
    eta = 2.0 / 3.0
    theta0 = jnp.array([1e-3, 0.8, 1.0])
    rec = selfstab.gd_and_constrained(cubic, theta0, eta, 150, v0=jnp.array([1.0, 0.1, 0.0]), tol=1e-12,
                                      eig_tol=1e-12, record_eig_tol=1e-12, pred_margin=0.05, second_every=5)
    started = np.asarray(rec.pred_started)
    t0 = int(np.argmax(started))
    assert 0 < t0 < 100 and np.all(started[t0:]) and not np.any(started[:t0])
    s_dag = np.asarray(rec.sharpness_dagger)
    np.testing.assert_allclose(s_dag[t0], 2 / eta, rtol=1e-9)  # on the edge, not 5 % below it
    assert 0.95 * 2 / eta <= s_dag[t0 - 1] < 2 / eta  # in the margin, below the edge: not yet the start
    np.testing.assert_allclose(rec.pred_x, rec.x, atol=1e-9)
    np.testing.assert_allclose(rec.pred_y, rec.y, atol=1e-9)
    np.testing.assert_allclose(rec.pred_loss, rec.loss, atol=1e-12)
    np.testing.assert_allclose(rec.pred_sharpness, rec.sharpness, atol=1e-8)
    np.testing.assert_allclose(rec.pred_deviation, rec.deviation, atol=1e-9)
    np.testing.assert_allclose(rec.alpha_perp, G * K, rtol=1e-9)
    # λ₂(θ†) = C, checked every 5 steps
    lam2 = np.asarray(rec.second_dagger)
    np.testing.assert_allclose(lam2[::5], C, rtol=1e-8)
    assert np.all(np.isnan(np.delete(lam2, np.arange(0, 150, 5))))
    m = selfstab.analyse_prediction(rec, eta, margin=1e-10, scalar=selfstab.analyse_edge(rec, eta, margin=1e-10))
    assert m["tracking_steps"] > 20 and m["blowup_step"] > t0 and m["second_step"] == -1
    for q in selfstab.PREDICTION_QUANTITIES:
        assert m[f"pred_{q}_err_tracking"] < 1e-8 < m[f"null_{q}_err_tracking"]
    assert m["scalar_sharpness_err_tracking"] < 1e-6
    # λ₂ above the limit: nothing compared past it, the step named
    low = selfstab.analyse_prediction(rec, eta, margin=1e-10, second_limit=0.9 * C * eta / 2)
    assert low["second_step"] == 0 and low["tracking_steps"] == 0
    assert np.isnan(low["pred_sharpness_err_tracking"])


def test_windows_of_analyse_prediction():
    """The tracking window runs from the edge step to |x| > δ plus `extra`; the rest is scored on
    block means, which a one-step slip of a period-2 oscillation leaves unchanged."""
    T, eta = 100, 0.5
    edge = 2 / eta
    t = np.arange(T)
    x = np.where(t < 30, 1e-3, 1.0) * (-1.0) ** t
    nan = np.full(T, np.nan)
    ones = np.ones(T)
    osc = edge + (-1.0) ** t
    rec = selfstab.PairRecord(
        loss=ones, sharpness=osc, loss_dagger=0 * ones, sharpness_dagger=np.where(t >= 10, edge, 1.0),
        x=x, y=0 * ones, alpha=ones, beta=8 * ones, grad_s_along_u=0 * ones, deviation=np.abs(x),
        travelled=t * 1.0, converged=ones > 0, iterations=ones, alpha_perp=ones,
        second_dagger=np.where(t % 10 == 0, 0.5 * edge, np.nan), pred_started=t >= 10, pred_loss=ones,
        pred_sharpness=edge - (-1.0) ** t, pred_x=x, pred_y=0 * ones, pred_deviation=np.abs(x))
    m = selfstab.analyse_prediction(rec, eta, margin=0.0, extra=5, block=10)
    # δ = √(2·1/8) = 0.5: |x| first exceeds it at step 30; tracking = steps 10..35
    assert m["blowup_step"] == 30 and m["tracking_steps"] == 26 and m["rest_blocks"] == 6
    assert m["pred_sharpness_err_tracking"] == 2.0  # out of phase pointwise
    assert m["pred_sharpness_err_rest"] == 0.0  # but equal on 10-step means
    assert m["pred_loss_err_tracking"] == 0.0 and m["null_loss_err_tracking"] == 1.0
    assert m["second_step"] == -1 and m["second_max_frac"] == 0.5


def test_analyse_edge_stops_at_lambda2_and_reads_the_stages_past_the_noise():
    """analyse_edge cuts the edge phase where λ₂(θ†) first exceeds second_limit·2/η (like
    analyse_prediction), and reads the stages and ⟨x²⟩ only from the first step where
    |x| > active·δ: rounding noise before it (|x| ~ 1e-9, growing while y < 0) is not scored."""
    T, eta = 100, 0.5
    edge = 2 / eta
    t = np.arange(T)
    # noise with the wrong stage (|x| grows while y < 0) until step 30, then a clean blow-up:
    # |x| grows while y > 0
    x = np.where(t < 30, 1e-9 * 1.01 ** t, 0.1 * 1.05 ** (t - 30)) * (-1.0) ** t
    y = np.where(t < 30, -1.0, 1.0)
    ones = np.ones(T)
    rec = selfstab.PairRecord(
        loss=ones, sharpness=edge * ones, loss_dagger=0 * ones, sharpness_dagger=np.where(t >= 10, edge, 1.0),
        x=x, y=y, alpha=ones, beta=8 * ones, grad_s_along_u=0 * ones, deviation=np.abs(x),
        travelled=t * 1.0 + 1, converged=ones > 0, iterations=ones, alpha_perp=ones,
        second_dagger=np.where(t % 10 == 0, np.where(t >= 60, 0.99, 0.5) * edge, np.nan),
        pred_started=t >= 10, pred_loss=ones, pred_sharpness=edge * ones, pred_x=x, pred_y=y,
        pred_deviation=np.abs(x))
    m = selfstab.analyse_edge(rec, eta, margin=0.0, second_limit=0.95).metrics
    # δ = √(2·1/8) = 0.5; 0.01·δ = 0.005 < 0.1 first at step 30; λ₂ passes 0.95·2/η at step 60
    assert m["second_step"] == 60 and m["edge_steps"] == 50
    assert m["stage_from"] == 30 and m["stage_steps"] == 29
    assert m["stage_x"] == 1.0  # the noise steps (|x| growing with y < 0) are not scored
    whole = selfstab.analyse_edge(rec, eta, margin=0.0, active=0.0).metrics
    assert whole["second_step"] == -1 and whole["edge_steps"] == 90 and whole["stage_from"] == 10
    assert whole["stage_x"] < 0.8
    # the open-loop scalar prediction still covers the whole run after the edge step
    assert len(selfstab.analyse_edge(rec, eta, margin=0.0, second_limit=0.95).loss_hat) == 90


def test_edge_sweep_members_are_the_same_mapped_or_vmapped(problem):
    """``vectorize=False`` (the CPU default: members one after another in one program) and
    ``vectorize=True`` (one vmap) give every member the same record."""
    params, loss = problem
    s0, _, _ = dense(loss, params)
    etas = jnp.array([2.0 / (1.5 * s0), 2.0 / (1.2 * s0)])
    key = jax.random.key(3)
    opts = dict(start_fraction=0.97, max_warmup=400, key=key, proj_tol=1e-7, eig_tol=1e-9)
    mapped = selfstab.edge_sweep(loss, params, etas, 6, vectorize=False, **opts)
    vmapped = selfstab.edge_sweep(loss, params, etas, 6, vectorize=True, **opts)
    np.testing.assert_array_equal(mapped.warmup_steps, vmapped.warmup_steps)
    for name in ("loss", "sharpness", "sharpness_dagger", "x", "y", "pred_loss", "iterations"):
        np.testing.assert_allclose(getattr(mapped.record, name), getattr(vmapped.record, name),
                                   rtol=1e-9, atol=1e-12, err_msg=name)
