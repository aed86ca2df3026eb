"""The DLN closed forms (Wang & Roberts, Sec. 3 / App. B) against jax.hessian + numpy eigh in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eoslib.mechanisms import dln

ZS = {
    "quadratic": dln.EvenPolynomial((0, 0, 1)),
    "quartic+quadratic": dln.EvenPolynomial((0, 0, 1, 0, 0.5)),
    "sextic": dln.EvenPolynomial((0.1, 0, 0.3, 0, 0, 0, 2.0)),
}


def random_points(rng, n=50):
    signs = rng.choice([-1, 1], size=(n, 2))
    return signs * np.exp(rng.uniform(np.log(0.05), np.log(5.0), size=(n, 2)))


def exact_hessians(thetas, z):
    return np.asarray(jax.vmap(jax.hessian(dln.loss), in_axes=(0, None))(jnp.asarray(thetas), z))


@pytest.mark.parametrize("zname", ZS)
def test_hessian_and_eigenvalues_match_dense_reference(zname, rng):
    z, thetas = ZS[zname], random_points(rng)
    exact = exact_hessians(thetas, z)
    closed = jax.vmap(dln.hessian, in_axes=(0, None))(jnp.asarray(thetas), z)
    np.testing.assert_allclose(closed, exact, rtol=1e-12, atol=1e-12)
    ref = np.linalg.eigh(exact)[0][:, ::-1]
    evals = jax.vmap(dln.eigenvalues, in_axes=(0, None))(jnp.asarray(thetas), z)
    np.testing.assert_allclose(evals, ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max())


@pytest.mark.parametrize("zname", ZS)
def test_r2_closed_form_matches_eigenvector(zname, rng):
    """R2(β) = β + √(β²+1) is the sharper over the flatter component of v1, whatever the signs."""
    z, thetas = ZS[zname], random_points(rng)
    vecs = np.linalg.eigh(exact_hessians(thetas, z))[1][:, :, -1]
    r2 = np.asarray(jax.vmap(lambda t: dln.r2_from_beta(dln.beta(t, z)))(jnp.asarray(thetas)))
    theta1_sharper = thetas[:, 1] ** 2 > thetas[:, 0] ** 2  # the paper's convention
    sharp = np.where(theta1_sharper, vecs[:, 0], vecs[:, 1])
    flat = np.where(theta1_sharper, vecs[:, 1], vecs[:, 0])
    # compare angles: eigh is accurate in absolute terms, not in tiny components' ratios
    np.testing.assert_allclose(np.arctan(1 / r2), np.arctan(np.abs(flat / sharp)), atol=1e-10)
    measured = np.asarray(jax.vmap(dln.r2_of_eigenvector)(jnp.asarray(vecs)))
    np.testing.assert_allclose(measured[theta1_sharper], r2[theta1_sharper], rtol=1e-8)


def test_gamma_beta_is_exact_for_quadratic_z(rng):
    z = ZS["quadratic"]
    thetas = jnp.asarray(np.repeat(random_points(rng), 5, axis=0))
    etas = jnp.asarray(rng.uniform(0.001, 0.5, size=len(thetas)))
    measured = jax.vmap(lambda t, e: dln.beta(dln.gd_step(t, e, z), z) / dln.beta(t, z))(thetas, etas)
    predicted = jax.vmap(lambda t, e: dln.gamma_beta(t, e, z))(thetas, etas)
    np.testing.assert_allclose(predicted, measured, rtol=1e-9)


def test_gamma_beta_is_an_approximation_for_other_z():
    """For z = Θ⁴+…, γ_β approximates γ_{r2} by γ_Θ (App. B.2): close for small steps, not exact."""
    z = ZS["quartic+quadratic"]
    theta = jnp.array([-0.3, 2.0])
    eta = 0.01
    measured = float(dln.beta(dln.gd_step(theta, eta, z), z) / dln.beta(theta, z))
    predicted = float(dln.gamma_beta(theta, eta, z))
    assert predicted == pytest.approx(measured, rel=0.05)
    assert predicted != pytest.approx(measured, rel=1e-9)


def test_regime_boundary_closed_forms():
    theta = jnp.array([-0.1, 10.0])
    z = ZS["quadratic"]
    boundary = dln.eta_regime_boundary(theta, z)
    assert float(dln.gamma_beta(theta, boundary, z)) == pytest.approx(1.0, abs=1e-10)
    # for z = Θ² the boundary is 2 / tr H = 2 / (λ1 + λ2), above GD's limit 2/λ1 by ≈ 3ξ
    lam = dln.eigenvalues(theta, z)
    assert float(boundary) == pytest.approx(2 / float(lam.sum()), rel=1e-12)
    assert float(dln.stability_limit(theta, z)) == pytest.approx(2 / float(lam[0]), rel=1e-12)
    xi = 0.01 / 100.01
    gap = float(boundary / dln.stability_limit(theta, z)) - 1
    assert gap == pytest.approx((np.sqrt(1 + 12 * xi * (1 - xi)) - 1) / 2, rel=1e-9)
    # the paper's η_eos = 0.01 at its Fig. 1 initialisation ("η_eos = 0.01")
    assert float(dln.eta_eos_paper(theta, z)) == pytest.approx(0.01, rel=1e-12)
    # the paper's Eq. for R2 at its initialisation: β = 99.99/4
    assert float(dln.beta(theta, z)) == pytest.approx(99.99 / 4, rel=1e-12)


def test_gd_scan_matches_python_loop():
    theta0, eta, z = jnp.array([-0.1, 10.0]), 0.011, ZS["quadratic"]
    traj = dln.gd(theta0, eta, 25, z)
    theta = theta0
    for t in range(26):
        np.testing.assert_allclose(traj.theta[t], theta, rtol=1e-12)
        assert float(traj.loss[t]) == pytest.approx(float(dln.loss(theta, z)), rel=1e-12)
        theta = dln.gd_step(theta, eta, z)
    assert int(traj.diverged_at) == -1


def test_divergence_is_recorded_not_raised():
    theta0 = jnp.array([-0.1, 10.0])
    runs = jax.vmap(lambda eta: dln.gd(theta0, eta, 40))(jnp.array([0.001, 0.05]))
    assert list(np.asarray(runs.diverged_at) >= 0) == [False, True]
    assert np.all(np.isfinite(runs.loss[0]))  # the stable member finished
    k = int(runs.diverged_at[1])
    assert np.all(np.isfinite(runs.loss[1, :k])) and np.all(np.isnan(runs.loss[1, k:]))
    assert list(np.asarray(dln.is_diverged(runs))) == [False, True]


def test_same_inputs_same_numbers():
    a = dln.gd(jnp.array([-0.1, 10.0]), 0.013, 50)
    b = dln.gd(jnp.array([-0.1, 10.0]), 0.013, 50)
    np.testing.assert_array_equal(a.theta, b.theta)


def test_first_reversal():
    assert dln.first_reversal(np.array([1.0, 2, 3, 4])) == (1, 3)
    assert dln.first_reversal(np.array([4.0, 3, 2, 5, 6])) == (-1, 2)
    assert dln.first_reversal(np.array([1.0, 2, np.inf, np.nan])) == (1, 1)
    assert dln.first_reversal(np.array([1.0])) == (0, 0)


@pytest.mark.parametrize("coeffs, fragment", [
    ((0, 1, 1), "odd"), ((0, 0, -1), "negative"), ((), "non-empty"), ((1,), "even k ≥ 2"),
    ((0, 0, float("nan")), "finite"),
])
def test_even_polynomial_rejects_bad_coefficients(coeffs, fragment):
    with pytest.raises(ValueError, match="z_coeffs") as err:
        dln.EvenPolynomial(coeffs)
    assert fragment.split()[0] in str(err.value) or "c_k" in str(err.value)


@pytest.mark.parametrize("theta", [(0.0, 1.0), (1.0,), (1.0, float("inf")), "ab"])
def test_validate_theta_rejects_bad_points(theta):
    with pytest.raises(ValueError, match="theta0"):
        dln.validate_theta(theta)


def central_difference(z, Theta, h=1e-5):
    return (float(z(Theta + h)) - float(z(Theta - h))) / (2 * h)


@pytest.mark.parametrize("zname", ZS)
def test_eta_eos_paper_is_the_papers_formula(zname, rng):
    """η_eos = 2θ1/(θ2 z') with z' by a central difference (no jax.grad), and the paper's boundary
    identity η_{γβ=1} = η_eos(1 − ξ) (Sec. 3.1), for every z; the first pole of γβ at half of it."""
    z = ZS[zname]
    for t1, t2 in random_points(rng, 20):
        theta = jnp.array([t1, t2])
        dz = central_difference(z, t1 * t2)
        eta = float(dln.eta_eos_paper(theta, z))
        assert eta == pytest.approx(2 * t1 / (t2 * dz), rel=1e-6)
        assert eta > 0
        xi = t1**2 / (t1**2 + t2**2)
        assert float(dln.eta_regime_boundary(theta, z)) == pytest.approx(eta * (1 - xi), rel=1e-12)
        # γβ's first pole, ηz' = θ1/θ2 (a root of 1 − sηz' + η²z'²), lies at η = η_eos/2
        assert eta / 2 * dz == pytest.approx(t1 / t2, rel=1e-6)


def test_eta_eos_paper_is_two_over_H11_only_for_quadratic_z():
    """Footnote 1: for quadratic z, θ1/(θ2 z') = 1/H11; for z = Θ² + ½Θ⁴ at Fig. 1's θ0 it is
    0.005, twice 2/H11 = 0.0025 (z'(−1) = −4, z''(−1) = 8)."""
    theta = jnp.array([-0.1, 10.0])
    for c in (0.5, 1.0, 3.0):  # z = cΘ²
        z = dln.EvenPolynomial((0, 0, c))
        two_over_H11 = 2 / float(dln.hessian(theta, z)[0, 0])
        assert float(dln.eta_eos_paper(theta, z)) == pytest.approx(two_over_H11, rel=1e-12)
    z = ZS["quartic+quadratic"]
    assert float(dln.eta_eos_paper(theta, z)) == pytest.approx(0.005, rel=1e-12)
    assert 2 / float(dln.hessian(theta, z)[0, 0]) == pytest.approx(0.0025, rel=1e-12)
    # for quadratic z it exceeds GD's stability limit 2/λ1 by ≈ 4ξ, not equal to it
    xi = 0.01 / 100.01
    ratio = float(dln.eta_eos_paper(theta) / dln.stability_limit(theta))
    assert ratio - 1 == pytest.approx(4 * xi, rel=1e-3)


def test_eta_eos_is_gone_with_a_pointer():
    with pytest.raises(AttributeError, match="stability_limit .*eta_eos_paper"):
        dln.eta_eos  # noqa: B018


def test_r2_from_beta_does_not_overflow():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow in b**2 was a RuntimeWarning
        big = np.array([1e155, 1e300])
        np.testing.assert_allclose(dln.r2_from_beta(big), 2 * big, rtol=1e-15)
        assert float(dln.r2_from_beta(np.inf)) == np.inf
    np.testing.assert_allclose(dln.r2_from_beta(jnp.array([0.0, 0.75])), [1.0, 2.0], rtol=1e-15)


def test_last_unstable_step():
    eta = 0.1  # 2/η = 20
    assert dln.last_unstable_step(np.array([25.0, 21, 20, 19, 18]), eta) == (2, True)
    assert dln.last_unstable_step(np.array([19.0, 18, 17]), eta) == (-1, True)
    assert dln.last_unstable_step(np.array([19.0, 22, 23]), eta) == (2, False)
    assert dln.last_unstable_step(np.array([25.0, 30, np.nan, np.nan]), eta) == (1, False)
    with pytest.raises(ValueError, match="eta"):
        dln.last_unstable_step(np.array([1.0]), 0.0)
    with pytest.raises(ValueError, match="shape"):
        dln.last_unstable_step(np.ones((2, 3)), eta)
