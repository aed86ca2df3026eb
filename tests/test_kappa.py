"""The coupled instability model: branches, absorption, median drift, statistics."""

import dataclasses

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


def _exit_model(mean, std=0.1):
    """Case I's walk with the whole initial law centred at ``mean`` (the exit is log κ = 0)."""
    case = kappa.CASES["I"]
    return kappa.CoupledModel("exit", g=case.g, f=case.f, init=((1.0,), (mean,), (std,)))


def test_a_start_with_no_mass_above_the_exit_is_an_error_not_a_hang():
    """Such a model used to spin forever in the rejection loop; now it is refused before any
    draw, in a subprocess guarded by a timeout to show it returns at all."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import jax
        from eoslib.mechanisms import kappa
        case = kappa.CASES["I"]
        model = kappa.CoupledModel("exit", g=case.g, f=case.f, init=((1.0,), (-5.0,), (0.1,)))
        try:
            kappa.initial_log_kappa(model, 100, jax.random.key(0))
        except ValueError as error:
            print(error)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "has no mass above the exit" in done.stdout and "init=((1.0,), (-5.0,), (0.1,))" in done.stdout
    with pytest.raises(ValueError, match="has no mass above the exit"):  # under jit too
        jax.jit(lambda k: kappa.initial_log_kappa(_exit_model(-5.0), 100, k))(jax.random.key(0))


def test_too_little_mass_above_the_exit_stops_after_max_rounds():
    """P(s > 0) = P(Z > 5) ≈ 3e-7 per draw: some mass, far too little for 100 draws in 50 rounds."""
    model = _exit_model(-0.5)
    with pytest.raises(ValueError, match=r"after max_rounds=50 rounds of redrawing, \d+ of n=100 draws"):
        kappa.initial_log_kappa(model, 100, jax.random.key(0), max_rounds=50)
    # under jit no error can be raised for a value: the draws still in the exit are NaN
    x = jax.jit(lambda k: kappa.initial_log_kappa(model, 100, k, max_rounds=50))(jax.random.key(0))
    assert np.isnan(np.asarray(x)).sum() >= 99
    # the default bound terminates as well (10 000 rounds; (1 − 3e-7)^10⁴ ≈ 1: all still in the exit)
    with pytest.raises(ValueError, match="after max_rounds=10000 rounds"):
        kappa.initial_log_kappa(model, 100, jax.random.key(0))
    # a reachable start needs several rounds and meets the bound: half the mass is above the exit
    x = kappa.initial_log_kappa(_exit_model(0.0), 1000, jax.random.key(1), max_rounds=60)
    assert x.shape == (1000,) and float(jnp.min(_exit_model(0.0).surplus(x))) > 0


@pytest.mark.parametrize("init, message", [
    (((1.0, 1.0), (1.0,), (0.1,)), "equal-length"),
    (((-1.0,), (1.0,), (0.1,)), "weights must be ≥ 0"),
    (((0.0,), (1.0,), (0.1,)), "positive sum"),
    (((1.0,), (1.0,), (-0.1,)), "stds must be ≥ 0"),
    (((1.0,), (float("nan"),), (0.1,)), "finite"),
    (((), (), ()), "non-empty"),
])
def test_a_malformed_initial_law_is_refused_when_the_model_is_built(init, message):
    case = kappa.CASES["I"]
    with pytest.raises(ValueError, match=message):
        kappa.CoupledModel("bad", g=case.g, f=case.f, init=init)


def test_bad_walk_arguments_are_named():
    case = kappa.CASES["I"]
    with pytest.raises(ValueError, match="eta=0"):
        kappa.CoupledModel("bad", g=case.g, f=case.f, eta=0.0)
    with pytest.raises(ValueError, match="noise_std=-1"):
        kappa.CoupledModel("bad", g=case.g, f=case.f, noise_std=-1.0)
    with pytest.raises(ValueError, match="max_rounds=0"):
        kappa.initial_log_kappa(case, 10, jax.random.key(0), max_rounds=0)
    with pytest.raises(ValueError, match="n=2.5"):
        kappa.initial_log_kappa(case, 2.5, jax.random.key(0))
    x0 = kappa.initial_log_kappa(case, np.int64(10), jax.random.key(0))  # numpy integers are integers
    sim = kappa.simulate(case, x0, np.int64(4), key=jax.random.key(1), record_every=np.int64(2))
    assert sim.log_kappa.shape == (3, 10)


def test_distribution_summary_on_a_known_skewed_law():
    x = np.random.default_rng(0).lognormal(0.0, 0.5, 200000)
    s = kappa.distribution_summary(x)
    np.testing.assert_allclose(s.median, 1.0, rtol=1e-2)
    np.testing.assert_allclose(s.mode, np.exp(-0.25), rtol=5e-2)
    assert s.skewness > 1.0 and s.mode < s.median < s.mean


def test_absorption_is_reachable_in_exact_arithmetic_only_with_a_floor():
    """Review finding (issue 16): with g ∝ s/(1+s) and s = e^X − 1 ≥ X, a step from X > 0 is
    0.1(1 − e^{−X}) < X, so the walk never reaches the exit; the exits seen in float32 were
    round-off in exp(X) − 1. With expm1 in float64 such a walk is never absorbed; our cases'
    floor (Prop. F.11) makes absorption reachable, and every absorbed state has s ≤ 0 exactly."""
    no_floor = kappa.CoupledModel("no floor", g=lambda s: 0.1 * s / (1.0 + s), f=lambda k: k,
                                  log_surplus=jnp.expm1)
    x0 = jnp.full(2000, 0.05)
    sim = kappa.simulate(no_floor, x0, 400, key=jax.random.key(0), record_every=400)
    assert sim.log_kappa.dtype == np.float64
    assert np.all(sim.exit_time < 0) and np.all(sim.log_kappa[-1] > 0)
    case = kappa.CASES["I"]
    assert float(case.g(0.0)) == pytest.approx(kappa.G_FLOOR)
    sim = kappa.simulate(case, x0, 400, key=jax.random.key(0), record_every=400)
    exited = sim.exit_time >= 0
    assert exited.mean() > 0.5
    assert np.all(np.expm1(sim.log_kappa[-1][exited]) <= 0)
    assert np.all(sim.log_kappa[-1][exited] > -0.1)  # one step (≤ 0.1) past the exit at most
    # the cancellation-free surplus agrees with the naive one away from the exit
    x = jnp.linspace(-1.0, 2.0, 7)
    naive = kappa.CoupledModel("naive", g=case.g, f=case.f)
    np.testing.assert_allclose(case.surplus(x), naive.surplus(x), rtol=1e-6, atol=1e-6)


def test_relative_change_keeps_signed_kappa():
    """Review finding (issue 16): κ ≤ 0 used to be dropped by log κ; the change metric keeps it."""
    change = kappa.relative_change(np.array([2.0, 4.0, -4.0, 0.0, 0.0]))
    np.testing.assert_allclose(change[:3], [np.tanh(np.log(2) / 2), 1.0, 1.0])
    assert np.isnan(change[3])


def test_variability_pairs_are_consecutive_probes_inside_instabilities():
    steps = np.array([0, 1, 2, 3, 4, 10, 11])
    s = np.array([10.0, 21, 22, 23, 24, 25, 26])
    k = np.array([1.0, 1.0, 1.1, 1.0, 1.5, 1.0, 2.0])
    t, lam, change = kappa.variability_pairs(steps, s, k, 20.0)
    # probe 0 is stable, probe 4 -> 10 is not one step apart; 10 -> 11 is
    assert list(t) == [1, 2, 3, 10] and list(lam) == [21, 22, 23, 25]
    np.testing.assert_allclose(change, kappa.relative_change(k)[[1, 2, 3, 5]])
    t6, _, _ = kappa.variability_pairs(steps, s, k, 20.0, gap=6)
    assert list(t6) == [4]


def test_correlation_pearson_and_spearman_with_p_values():
    x = np.arange(20.0)
    y = x ** 3  # monotone, not linear
    c = kappa.correlation(x, y)
    assert c.pairs == 20 and c.spearman == pytest.approx(1.0) and 0.8 < c.pearson < 1.0
    assert c.pearson_p < 1e-5 and c.spearman_p < 1e-5
    flat = kappa.correlation(x, np.ones(20))
    assert np.isnan(flat.pearson) and np.isnan(flat.spearman_p) and flat.pairs == 20
    assert kappa.correlation([1.0, np.nan, 2.0], [1.0, 2.0, 3.0]).pairs == 2


def test_plateau_peak_excludes_the_reduction_step_and_needs_a_settled_interior_peak():
    """Review findings (issues 16, 30): the probe at the reduction step still has the unstable
    phase's sharpness; a phase whose maximum is its first probe showed no sharpening; a phase
    still rising (or whose maximum came less than ``settle`` steps before its end) has not
    plateaued."""
    steps = np.arange(0, 100, 10)
    s = np.array([50.0, 9, 10, 12, 15, 14, 13, 12, 11, 10])  # the reduction at step 0
    assert kappa.plateau_peak(steps, s, 0, 90, 30) == (15.0, 40, True)
    assert kappa.plateau_peak(steps, s, 0, 90, 60) == (15.0, 40, False)  # 50 steps after it only
    rising = np.array([50.0, 9, 10, 11, 12, 13, 14, 15, 16, 17])
    assert kappa.plateau_peak(steps, rising, 0, 90, 10) == (17.0, 90, False)
    decaying = np.array([50.0, 19, 18, 17, 16, 15, 14, 13, 12, 11])
    assert kappa.plateau_peak(steps, decaying, 0, 90, 10) == (19.0, 10, False)
    assert np.isnan(kappa.plateau_peak(steps, s, 80, 90, 10).smax)


def test_median_standard_error_of_a_normal_sample():
    x = np.random.default_rng(1).normal(0.0, 2.0, 40000)
    # the sample median of N(0, σ²) has standard error √(π/2) σ/√n
    np.testing.assert_allclose(kappa.median_standard_error(x), np.sqrt(np.pi / 2) * 2 / 200,
                               rtol=0.05)
    assert np.isnan(kappa.median_standard_error(np.array([1.0, np.nan])))


def test_two_step_branches_are_float64_and_mean_zero_to_round_off():
    d = kappa.two_step_branches(kappa.CASES["II"], np.linspace(0.05, 3.0, 100))
    assert d.dtype == np.float64 and np.max(np.abs(d.mean(axis=1))) < 1e-15


def test_absorption_alone_moves_the_median_so_the_null_keeps_the_exit_off():
    """Why the claim beyond the theorems is graded with the exit off: with the exit on, a walk
    with a constant step (no state dependence at all) also ends with its median fallen by about
    the initial median and a right-skewed law; with the exit off the constant-step null's median
    stays put while the state-dependent walk's falls."""
    case = kappa.CASES["II"]
    x0 = kappa.initial_log_kappa(case, 4000, jax.random.key(5))
    key = jax.random.key(6)
    null_exit = kappa.constant_step(case, x0)
    sim = kappa.simulate(null_exit, x0, 1500, key=key, record_every=1500)
    end = kappa.distribution_summary(sim.log_kappa[-1])
    assert (sim.exit_time >= 0).mean() > 0.5
    assert end.median - np.median(x0) < -0.9 and end.skewness > 0.5  # absorption did it
    free = dataclasses.replace(case, absorbing=False)
    null = kappa.constant_step(free, x0)
    walks = {m: kappa.simulate(m, x0, 1500, key=key, record_every=1500) for m in (free, null)}
    assert all(np.all(w.exit_time == -1) for w in walks.values())  # nothing absorbed
    drift = {m: np.median(w.log_kappa[-1]) - np.median(x0) for m, w in walks.items()}
    se = kappa.median_standard_error(walks[null].log_kappa[-1])
    assert abs(drift[null]) < 3 * se  # a constant-step martingale: no median drift
    assert drift[free] < drift[null] - 10 * se  # the state-dependent step: the flatness bias


def test_constant_step_is_the_mean_initial_step_and_the_free_walk_steps_past_the_exit():
    case = kappa.CASES["I"]
    x0 = jnp.asarray([0.5, 1.0, 1.5])
    null = kappa.constant_step(case, x0)
    expected = float(np.mean(np.asarray(case.step_size(x0))))
    np.testing.assert_allclose(np.asarray(null.step_size(jnp.asarray([0.2, 2.0]))), expected)
    assert null.absorbing and float(null.step_size(jnp.asarray(-0.5))) == 0.0
    free = dataclasses.replace(case, absorbing=False)
    assert float(free.step_size(jnp.asarray(-0.5))) == pytest.approx(kappa.G_FLOOR)


def test_rotation_switches_are_timed_by_the_kept_eta_rotation():
    """Review: clock-timed switches came before any rotation; the switch is now the first probe
    where 1 − similarity reaches a fraction of its drop inside the window."""
    steps = np.array([0, 2, 4, 6, 8, 10, 12])
    sim = np.array([1.0, 0.99, 0.96, 0.91, 0.8, 0.85, 0.6])  # the window ends at step 10
    at, drop = kappa.rotation_switches(steps, sim, 10, [0.25, 0.5, 0.75])
    assert drop == pytest.approx(0.2)
    np.testing.assert_array_equal(at, [6, 8, 8])  # 1 − sim ≥ 0.05, 0.10, 0.15 (no ties)
    at, drop = kappa.rotation_switches(steps, np.ones(7), 10, [0.5])
    assert drop == 0.0 and at.tolist() == [-1]


def test_reversal_reads_rise_and_gap_against_the_kept_eta_run_unclipped():
    steps = np.array([0, 2, 4, 6, 8])
    sim = np.array([[1.0, 0.9, 0.8, 0.7, 0.6],     # kept η: keeps rotating away
                    [1.0, 0.9, 0.8, 0.9, 0.95],    # lowered at 4: rises 0.15 by 8
                    [1.0, 0.9, 0.8, 0.75, 0.7]])   # lowered at 2: slowed, still falls
    rev = kappa.reversal(sim, steps, np.array([4, 2]), 4)
    np.testing.assert_allclose(rev.rise, [0.15, -0.15])
    np.testing.assert_allclose(rev.gap, [0.35, 0.05])
    np.testing.assert_allclose(rev.share, [0.35 / 0.4, 0.05 / 0.3])
    np.testing.assert_allclose(rev.rotated, [0.2, 0.1])
    np.testing.assert_allclose(rev.control_drop, [0.2, 0.2])
    with pytest.raises(ValueError, match="not probe steps"):
        kappa.reversal(sim, steps, np.array([4, 2]), 6)


def test_positive_pairs_follow_the_variability_pairs():
    steps = np.arange(6)
    s = np.array([30.0, 30.0, 10.0, 30.0, 30.0, 30.0])  # edge 20: step 2 is not a pair
    k = np.array([1.0, 2.0, -1.0, 3.0, 4.0, -2.0])
    _, _, change = kappa.variability_pairs(steps, s, k, 20.0)
    pos = kappa.positive_pairs(steps, s, k, 20.0)
    assert pos.shape == change.shape
    np.testing.assert_array_equal(pos, [True, False, True, False])  # 0→1, 1→2, 3→4, 4→5


def test_mode_check_resolution_and_agreement():
    """The mode is read on a quantile grid with a resolution max(grid step, bootstrap SD); a
    right-skewed law has all three modes left of the median, a symmetric one is within a few
    resolutions of it."""
    rng = np.random.default_rng(0)
    sample = rng.lognormal(0.0, 0.6, 5000)
    skewed = kappa.mode_check(sample)
    assert skewed.agree and all(m <= skewed.median for m in skewed.modes)
    assert skewed.resolution >= skewed.grid_step > 0 and max(skewed.excess) < -2
    assert skewed.grid_step == pytest.approx(np.ptp(np.quantile(sample, [0.005, 0.995])) / 511)
    sym = kappa.mode_check(rng.normal(0.0, 1.0, 5000))
    assert abs(min(sym.excess)) < 4
    # a far outlier does not coarsen the grid (quantile range)
    with_outlier = kappa.mode_check(np.append(rng.normal(0.0, 1.0, 5000), 1e4))
    assert with_outlier.grid_step < 0.05
    assert np.isnan(kappa.mode_check([1.0, 2.0]).resolution)
    for bad in ({"grid_points": 4}, {"resamples": 1}, {"quantiles": (0.9, 0.1)}):
        with pytest.raises(ValueError):
            kappa.mode_check(rng.normal(size=50), **bad)


def test_below_exit_continuation_keeps_the_step_increasing():
    """An exit-off walk with below_exit steps by it past the exit (not the constant floor), the
    step is strictly increasing across the exit, and the constant-step null stays constant."""
    free = dataclasses.replace(kappa.CASES["I"], absorbing=False,
                               below_exit=kappa.sigmoid_continuation)
    x = jnp.linspace(-3.0, 3.0, 601)
    with jax.enable_x64(True):
        h = np.asarray(free.step_size(jnp.asarray(np.asarray(x, np.float64))))
    assert np.all(h > 0) and np.all(np.diff(h) > 0)
    assert float(kappa.sigmoid_continuation(jnp.asarray(0.0))) == pytest.approx(kappa.G_FLOOR)
    floor = dataclasses.replace(kappa.CASES["I"], absorbing=False)  # default: unchanged
    assert np.allclose(np.asarray(floor.step_size(jnp.asarray([-2.0, -0.5]))), kappa.G_FLOOR)
    x0 = jnp.asarray([-1.0, 0.5, 1.0])
    null = kappa.constant_step(free, x0)
    assert np.ptp(np.asarray(null.step_size(jnp.linspace(-3.0, 3.0, 7)))) == 0
    sim = kappa.simulate(free, jnp.full(200, -1.0), 4, key=jax.random.key(0))
    steps = np.abs(np.diff(sim.log_kappa[:2], axis=0))
    assert np.allclose(steps, float(kappa.sigmoid_continuation(jnp.asarray(-1.0))), rtol=1e-6)
