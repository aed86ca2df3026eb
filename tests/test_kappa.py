"""The coupled instability model: branches, absorption, median drift, statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eoslib.mechanisms import kappa


@pytest.mark.parametrize("case", sorted(kappa.CASES))
def test_three_of_four_two_step_branches_go_left_and_the_mean_is_kept(case):
    model = kappa.CASES[case]
    x = jnp.linspace(0.3, 3.0, 50)  # well inside the unstable region: no branch exits
    d = np.asarray(kappa.two_step_branches(model, x))
    assert d.shape == (50, 4)
    assert np.all(d[:, 0] > 0) and np.all(d[:, 1:] < 0)
    np.testing.assert_allclose(d.sum(axis=1), 0.0, atol=1e-6)  # a martingale: mean displacement 0


def test_absorbed_trajectories_keep_their_exit_value():
    model = kappa.CASES["II"]
    x0 = jnp.full(2000, 0.05)  # just above the exit at log κ = 0
    sim = kappa.simulate(model, x0, 400, key=jax.random.key(0), record_every=100)
    assert sim.log_kappa.shape == (5, 2000) and list(sim.times) == [0, 100, 200, 300, 400]
    exited = sim.exit_time >= 0
    assert exited.mean() > 0.5
    assert np.all(sim.log_kappa[-1][exited] <= 0.0 + 1e-12)
    # an exited trajectory does not move afterwards
    frozen = sim.exited[2]
    np.testing.assert_array_equal(sim.log_kappa[3][frozen], sim.log_kappa[2][frozen])


def test_median_drifts_left_and_law_skews_right_case_one():
    model = kappa.CASES["I"]
    x0 = kappa.initial_log_kappa(model, 20000, jax.random.key(1))
    assert float(jnp.min(model.surplus(x0))) > 0
    sim = kappa.simulate(model, x0, 2000, key=jax.random.key(2), record_every=500)
    start, end = kappa.distribution_summary(sim.log_kappa[0]), kappa.distribution_summary(sim.log_kappa[-1])
    assert end.median < start.median
    assert abs(end.mean - start.mean) < 0.02  # martingale until absorption; absorption is rare here
    assert end.skewness > 0 and end.mode <= end.median


def test_bimodal_initialisation_and_bad_inputs():
    x0 = kappa.initial_log_kappa(kappa.CASES["III"], 5000, jax.random.key(3))
    assert abs(float(jnp.mean(x0 < 1.1)) - 0.5) < 0.03
    with pytest.raises(ValueError, match="record_every"):
        kappa.simulate(kappa.CASES["I"], x0, 10, key=jax.random.key(0), record_every=3)
    with pytest.raises(ValueError, match="steps"):
        kappa.simulate(kappa.CASES["I"], x0, 0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="n="):
        kappa.initial_log_kappa(kappa.CASES["I"], 0, jax.random.key(0))


def test_distribution_summary_on_a_known_skewed_law():
    x = np.random.default_rng(0).lognormal(0.0, 0.5, 200000)
    s = kappa.distribution_summary(x)
    np.testing.assert_allclose(s.median, 1.0, rtol=1e-2)
    np.testing.assert_allclose(s.mode, np.exp(-0.25), rtol=5e-2)
    assert s.skewness > 1.0 and s.mode < s.median < s.mean
