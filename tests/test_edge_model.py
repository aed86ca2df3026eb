"""The (x, y) edge model with weight decay: algebra against the toy, fixed points, fits."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eoslib.mechanisms import edge_model


def test_toy_gd_is_the_xy_recursion_exactly():
    toy = edge_model.SharpeningToy(s0=100.0, alpha=5.0, drive=0.01)
    eta, gamma, steps = 0.01, 0.03, 3000
    traj = toy.gd(jnp.array([1e-3, 0.0]), eta=eta, gamma=gamma, steps=steps)
    y0 = toy.s0 + 0.0 - 2 / eta
    pred = edge_model.xy_recursion(1e-3, y0, eta=eta, alpha=toy.alpha, beta=1.0, steps=steps, gamma=gamma,
                                   cy_edge=2 / eta - toy.s0, cy_slope=1.0, drive=toy.drive)
    np.testing.assert_allclose(traj.theta[:, 0], pred.x, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(traj.projected_sharpness - 2 / eta, pred.y, rtol=1e-9, atol=1e-9)


def test_toy_settles_at_the_shifted_threshold_with_the_predicted_amplitude():
    toy = edge_model.SharpeningToy(s0=100.0, alpha=5.0, drive=0.01)
    eta, gamma = 0.01, 0.045  # damped (predicted_damping_rate > 0) and below the transition (γ < 0.05)
    traj = toy.gd(jnp.array([1e-3, 0.0]), eta=eta, gamma=gamma, steps=100000)
    s_end = float(traj.projected_sharpness[-1])
    # the drive shifts the orbit by O(drive²); without it the fixed point is exact
    assert abs(s_end - edge_model.predicted_threshold(eta, gamma)) < 1e-3
    z_end = float(traj.theta[-1, 1])
    x_amp = 0.5 * abs(float(traj.theta[-1, 0] - traj.theta[-2, 0]))
    np.testing.assert_allclose(x_amp, np.sqrt(2 * (toy.alpha - gamma * z_end)), rtol=1e-3)


def test_toy_phase_transition_below_the_edge():
    toy = edge_model.SharpeningToy(s0=100.0, alpha=5.0, drive=0.01)
    eta, gamma = 0.01, 0.1  # sharpening stops at s0 + alpha/gamma = 150 < 2/eta - gamma
    traj = toy.gd(jnp.array([1e-3, 0.0]), eta=eta, gamma=gamma, steps=20000)
    plateau = edge_model.sub_edge_plateau(toy.alpha, gamma, lambda s: s - toy.s0, np.linspace(100, 200, 100001))
    assert abs(float(traj.projected_sharpness[-1]) - 150.0) < 1e-3
    assert abs(plateau - 150.0) < 1e-2
    assert float(jnp.max(jnp.abs(traj.theta[1:, 0]))) <= 1e-3  # no instability along x


@pytest.mark.parametrize("gamma", [0.04, 0.045])
def test_damping_rate_matches_the_linearisation(gamma):
    toy = edge_model.SharpeningToy(s0=100.0, alpha=5.0, drive=0.01)
    eta = 0.01
    traj = toy.gd(jnp.array([1e-3, 0.0]), eta=eta, gamma=gamma, steps=80000)
    t = np.arange(80001)
    late = (t >= 20000) & (t < 70000)  # small oscillations (the linearisation's domain), above round-off
    fit = edge_model.envelope_decay_rate(t[late], np.asarray(traj.projected_sharpness)[late], window=5000)
    predicted = edge_model.predicted_damping_rate(eta, gamma, alpha=toy.alpha, cy_edge=2 / eta - toy.s0, cy_slope=1.0)
    assert predicted > 0
    assert fit.r2 > 0.99
    assert abs(fit.rate / predicted - 1) < 0.05, (fit.rate, predicted)


def test_small_decay_leaves_a_limit_cycle():
    """Below γ·slope = ηβx*² the discrete map's anti-damping wins: no convergence."""
    toy = edge_model.SharpeningToy(s0=100.0, alpha=5.0, drive=0.01)
    eta, gamma = 0.01, 0.02
    assert edge_model.predicted_damping_rate(eta, gamma, alpha=5.0, cy_edge=100.0, cy_slope=1.0) < 0
    s = np.asarray(toy.gd(jnp.array([1e-3, 0.0]), eta=eta, gamma=gamma, steps=60000).projected_sharpness)
    assert np.ptp(s[-10000:]) > 10


def test_envelope_recovers_a_synthetic_damped_oscillation():
    t = np.arange(0, 20000, 5.0)
    s = 3.0 + 2.0 * np.exp(-1e-4 * t) * np.sign(np.cos(0.05 * t + 0.4))  # square wave: not a cosine
    fit = edge_model.envelope_decay_rate(t, s, window=500)
    np.testing.assert_allclose(fit.rate, 1e-4, rtol=2e-2)
    assert np.isnan(edge_model.envelope_decay_rate(t[:50], s[:50], window=500).rate)
    with pytest.raises(ValueError, match="window"):
        edge_model.envelope_decay_rate(t, s, window=0)


def test_divergence_is_recorded_not_raised():
    toy = edge_model.SharpeningToy(s0=100.0, alpha=5.0, drive=0.01)
    traj = toy.gd(jnp.array([1.0, 0.0]), eta=0.05, gamma=0.0, steps=200)  # 2/eta = 40 < s0: diverges
    assert int(traj.diverged_at) > 0
    assert np.isnan(np.asarray(traj.loss)[-1])
    assert np.isnan(np.asarray(traj.loss)[int(traj.diverged_at)])
    pred = edge_model.xy_recursion(1.0, 60.0, eta=0.05, alpha=5.0, beta=1.0, steps=200)
    assert np.isnan(np.asarray(pred.x)[-1]) and int(pred.diverged_at) > 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(s0=-1.0, alpha=1.0), "s0"),
    (dict(s0=1.0, alpha=0.0), "alpha"),
])
def test_bad_toy_parameters_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        edge_model.SharpeningToy(**kwargs)


def test_bad_steps():
    with pytest.raises(ValueError, match="steps"):
        edge_model.xy_recursion(0.0, 0.0, eta=0.1, alpha=1.0, beta=1.0, steps=0)
    with pytest.raises(ValueError, match="eta"):
        edge_model.predicted_threshold(0.0, 0.1)


def test_plateau_stop_and_the_crossing_that_counts():
    t = np.arange(0, 100, 10.0)
    s = np.array([10, 30, 50, 70, 78, 80, 80, 80, 80, 80.0])
    pl = edge_model.plateau(t, s, 100.0)
    assert pl.level == pytest.approx(80.0) and pl.drift == pytest.approx(0.0, abs=1e-12)
    assert edge_model.plateau(t, np.where(t > 80, np.nan, s), 100.0) == (np.inf, np.inf)
    stop = edge_model.stop_index(s, pl.level)  # 0.95 · 80 = 76: probe 4
    assert stop == 4 and edge_model.stop_index(s, np.inf) is None
    assert edge_model.stop_index(s[::-1], 40.0) is None  # falling from the start: never rose
    crit = np.array([0.0, 5, 5, 1, 1, 0, 0, 0, 0, 0])
    # c_y ≥ α/γ at init (α ≈ 0) is no crossing; crossing at probe 3, held at 4 (the stop): aligned
    assert edge_model.aligned_before_stop(np.full(10, 2.0), crit, stop) is True
    assert edge_model.first_crossing(np.full(10, 2.0), crit) == 3
    # a crossing at the stop itself cannot show that it persists before the stop
    at_stop = np.array([0.0, 5, 5, 5, 1, 0, 0, 0, 0, 0])
    assert edge_model.aligned_before_stop(np.full(10, 2.0), at_stop, stop) is False
    assert edge_model.aligned_before_stop(np.full(10, 2.0), at_stop, stop, persist=1) is True
    # the crossing only once α → 0 after the stop does not count
    late_crit = np.array([0.0, 5, 5, 5, 5, 5, 0, 0, 0, 0])
    assert edge_model.aligned_before_stop(np.full(10, 2.0), late_crit, stop) is False
    assert edge_model.aligned_before_stop(np.full(10, 2.0), crit, None) is None
    with pytest.raises(ValueError, match="fraction"):
        edge_model.stop_index(s, 80.0, fraction=0.0)


def test_a_crossing_must_persist_over_two_probes():
    """Issue 31: at the edge α flips sign every step, so one probe above α/γ (one parity) is
    not a crossing; the crossing must hold on two consecutive probes."""
    c_y = np.full(8, 1.0)
    blip = np.array([0.0, 3, 0.5, 3, 0.5, 3, 3, 3])  # above at 2 and 4 only, then never again
    assert edge_model.first_crossing(c_y, blip) is None
    assert edge_model.first_crossing(c_y, blip, persist=1) == 2
    assert edge_model.aligned_before_stop(c_y, blip, 6) is False
    held = np.array([0.0, 3, 0.5, 0.5, 3, 3, 3, 3])
    assert edge_model.first_crossing(c_y, held) == 2
    assert edge_model.first_crossing(c_y, held, until=2) is None  # its second probe is past 2
    assert edge_model.first_crossing(c_y, np.where(np.arange(8) == 3, np.nan, held)) is None
    with pytest.raises(ValueError, match="persist"):
        edge_model.first_crossing(c_y, held, persist=0)


def test_damping_onset_and_transition_of_the_chapter_toy():
    """Review: the chapter typed 0.08 and 0.121 for η = 0.01, s₀ = 100, α = 12; the transition
    s₀ + α/γ = 2/η − γ is at γ ≈ 0.1201 (not 0.121). Both now come from these functions."""
    eta, s0, alpha = 0.01, 100.0, 12.0
    c = 2 / eta - s0
    onset = edge_model.damping_onset(eta, alpha=alpha, cy_edge=c, cy_slope=1.0)
    assert onset == pytest.approx(0.08, abs=1e-4)  # first order: 2ηα/(1 + 2ηc) = 0.08
    rate = lambda g: edge_model.predicted_damping_rate(eta, g, alpha=alpha, cy_edge=c,
                                                       cy_slope=1.0)
    assert rate(onset) == pytest.approx(0.0, abs=1e-12)
    assert rate(0.99 * onset) < 0 < rate(1.01 * onset)
    gt = edge_model.transition_gamma(alpha=alpha, cy_edge=c, cy_slope=1.0)
    assert gt == pytest.approx(0.12015, abs=1e-5)
    assert s0 + alpha / gt == pytest.approx(2 / eta - gt)  # S stops exactly at the edge
    assert s0 + alpha / (1.01 * gt) < 2 / eta - 1.01 * gt  # past it: below the edge
    # no transition when α is too large for the room c below the edge, nor when s₀ ≥ 2/η
    assert math.isnan(edge_model.transition_gamma(alpha=3000.0, cy_edge=c, cy_slope=1.0))
    assert math.isnan(edge_model.transition_gamma(alpha=alpha, cy_edge=-5.0, cy_slope=1.0))


def test_the_crossing_is_graded_by_the_sharpness_at_which_it_happens():
    """Review (issue 31 follow-up): around an edge oscillation θ† ± x·u the pair average of
    α = −∇L·∇S is α† − x²k (k = β/2 + S·uᵀ∇²S·u), and stationarity at the edge makes it ≈ γ c_y,
    so a crossing graded "before S stops" holds for any run. Read at the midpoint, α is α†; the
    crossing is graded by the sharpness at which it happens."""
    gamma, edge = 0.05, 100.0
    s = np.array([20, 40, 60, 80, 90, 96, 99, 99.5, 99.5, 99.5])
    c_y = 2.0 * s  # c_y ∝ S (homogeneity)
    alpha_true = np.full(10, 12.0)  # α† never falls to γ c_y
    x2k = np.where(s >= 90, alpha_true - 0.98 * gamma * c_y, 0.0)  # x²k, at the edge
    alpha_pair = alpha_true - x2k  # pair average: ≈ γ c_y once oscillating
    stop = edge_model.stop_index(s, edge_model.plateau(np.arange(10.0), s, edge).level)
    # the old reading: the pair average "crosses" by the stop, for a run that never aligns
    assert edge_model.aligned_before_stop(c_y, alpha_pair / gamma, stop) is True
    # graded by the sharpness at the crossing, neither reading aligns below 0.9·edge
    for alpha in (alpha_pair, alpha_true):
        assert edge_model.crossing_below_sharpness(c_y, alpha / gamma, s, 0.9 * edge) is False
    # a control that crosses only at the edge does not cross while S < 0.95·edge
    assert edge_model.crossing_below_sharpness(c_y, alpha_pair / gamma, s, 0.95 * edge,
                                               strict=True) is False
    # a run whose α falls below γ c_y at S = 60 (probe 2) aligns well before the edge
    early = np.where(np.arange(10) >= 2, 0.5 * gamma * c_y, alpha_true)
    assert edge_model.crossing_below_sharpness(c_y, early / gamma, s, 0.9 * edge) is True
    # a run that ends below the bound without crossing is undecided
    assert edge_model.crossing_below_sharpness(c_y[:3], alpha_true[:3] / gamma, s[:3],
                                               0.9 * edge) is None


def _quarters_by_hand(s, edge):
    """eos-intro's reading as the chapter wrote it before edge_phase (the reference)."""
    hit = np.nonzero(s >= edge)[0]
    phase = s[hit[0]:]
    second = phase[phase.size // 2:]
    q = second.size // 2
    return float(np.mean(second)), float((np.mean(second[q:]) - np.mean(second[:q])) / edge)


def _line_by_hand(t, s, edge):
    """your-own-model's reading as the chapter wrote it before edge_phase (the reference)."""
    hit = np.nonzero(s >= edge)[0]
    finite = np.nonzero(np.isfinite(s))[0]
    start = int(hit[0]) if hit.size else int(finite[0])
    win = np.arange(start, s.size)[(s.size - start) // 2:]
    slope = np.polyfit(t[win], s[win], 1)[0]
    return float(s[win].mean()), float(slope * (t[win][-1] - t[win][0]) / edge)


@pytest.mark.parametrize("seed", range(5))
def test_edge_phase_is_each_chapters_declared_reading(seed):
    """One function for the edge-phase window that eos-intro and your-own-model both declare,
    with each chapter's drift rule: equal to the readings the notebooks wrote inline before."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, 20 * 60, 20.0)
    s = np.concatenate([np.linspace(1, 2.2, 17 + seed), 2 + 0.05 * rng.standard_normal(43 - seed)])
    ep = edge_model.edge_phase(t, s, 2.0, drift="quarters")
    assert ep.onset == int(np.nonzero(s >= 2.0)[0][0])
    assert (ep.level, ep.drift) == pytest.approx(_quarters_by_hand(s, 2.0), rel=1e-12)
    line = edge_model.edge_phase(t, s, 2.0, unreached="finite")
    assert (line.level, line.drift) == pytest.approx(_line_by_hand(t, s, 2.0), rel=1e-12)
    # never reaching the edge: nothing is read, unless the level below it is wanted
    below = edge_model.edge_phase(t, s / 3, 2.0)
    assert below.onset is None and below.window.size == 0 and np.isnan(below.level)
    finite = edge_model.edge_phase(t, s / 3, 2.0, unreached="finite")
    assert (finite.level, finite.drift) == pytest.approx(_line_by_hand(t, s / 3, 2.0), rel=1e-12)


def test_edge_phase_reads_a_broken_window_as_infinite_and_rejects_bad_rules():
    t = np.arange(10.0)
    s = np.array([1, 2, 3, 3, 3, 3, 3, np.nan, 3, 3.0])
    assert edge_model.edge_phase(t, s, 2.5)[2:] == (np.inf, np.inf)
    one = edge_model.edge_phase(t[:4], np.array([1, 1, 1, 3.0]), 2.5)
    assert one.level == 3.0 and np.isnan(one.drift)
    with pytest.raises(ValueError, match="drift"):
        edge_model.edge_phase(t, s, 2.5, drift="halves")
    with pytest.raises(ValueError, match="unreached"):
        edge_model.edge_phase(t, s, 2.5, unreached="all")
    with pytest.raises(ValueError, match="edge"):
        edge_model.edge_phase(t, s, 0.0)


def test_plateau_drift_per_steps_does_not_depend_on_the_horizon():
    """``per=``: the drift as a rate per ``per`` steps reads one slope the same in a short and a
    long run; the default (across the last quarter) grows with the horizon and is unchanged."""
    for steps in (3000, 14000):
        t = np.arange(0, steps + 1, 100.0)
        s = 80 - 0.0007 * t  # falls 0.7 per 1,000 steps
        rate = edge_model.plateau(t, s, 100.0, per=1000)
        assert rate.drift == pytest.approx(-0.007, rel=1e-9)
        late = t >= 3 * t[-1] / 4
        quarter = edge_model.plateau(t, s, 100.0)
        assert quarter.drift == pytest.approx(-0.0007 * (t[late][-1] - t[late][0]) / 100, rel=1e-9)
        assert rate.level == quarter.level
    t = np.arange(10.0)
    assert edge_model.plateau(t, np.where(t > 8, np.inf, t), 1.0, per=1000) == (np.inf, np.inf)
    for bad in (0, -5, "1000"):
        with pytest.raises(ValueError, match="per"):
            edge_model.plateau(t, t, 1.0, per=bad)


def test_stop_rising_is_the_peak_of_a_series_that_declines_after_it():
    # rises to 82 at probe 5, then declines: stop_index (95 % of the late mean) stops far earlier
    s = np.array([20, 50, 70, 76, 80, 82, 81, 79, 76, 74, 72, 71, 70.0])
    assert edge_model.stop_rising(s) == 5  # 82 exceeds 80 by more than 1 %: the peak
    # with a 5 % tolerance, 80 already is the stop (84 is within 5 % of it)
    s2 = np.array([20, 50, 70, 76, 80, 84, 81, 79, 76, 74, 72, 71, 70.0])
    assert edge_model.stop_rising(s2) == 5
    assert edge_model.stop_rising(s2, tolerance=0.05) == 4
    assert edge_model.stop_index(s2, edge_model.plateau(np.arange(13.0), s2, 100).level) == 2
    # an edge oscillation ±1 % about its level is stopped at its first full swing
    osc = np.concatenate([np.linspace(20, 100, 9), 100 + np.tile([0.8, -0.8], 10)])
    assert edge_model.stop_rising(osc) == 8
    # still rising at the end, never rising, or diverged: not stopped
    assert edge_model.stop_rising(np.arange(10.0)) is None
    assert edge_model.stop_rising(np.arange(10.0)[::-1]) is None
    assert edge_model.stop_rising(np.array([1, 2, 3, np.nan, 3.0])) is None
    with pytest.raises(ValueError, match="tolerance"):
        edge_model.stop_rising(s, tolerance=-0.1)
    with pytest.raises(ValueError, match="1-d"):
        edge_model.stop_rising(s.reshape(1, -1))


def test_edge_phase_sustained_reach_ignores_a_single_spike():
    """``reach_mean``/``reach_fraction``: one probe above the edge is not an onset; the first
    block of ``reach_mean`` probes whose mean is at least ``reach_fraction × edge`` is. The
    defaults keep the one-probe reading."""
    t = np.arange(12.0)
    s = np.array([1, 1, 3.0, 1, 1, 1, 1.9, 1.95, 2.0, 1.9, 2.1, 2.0])  # spike at 2, sustained from 6
    assert edge_model.edge_phase(t, s, 2.0).onset == 2
    assert edge_model.edge_phase(t, s, 2.0, reach_mean=1, reach_fraction=1.0).onset == 2
    sustained = edge_model.edge_phase(t, s, 2.0, reach_mean=4, reach_fraction=0.95)
    assert sustained.onset == 6
    assert np.array_equal(sustained.window, np.arange(9, 12))
    # at the full edge the first block whose mean clears 2.0 starts at 8 (2.0, 1.9, 2.1, 2.0)
    assert edge_model.edge_phase(t, s, 2.0, reach_mean=4, reach_fraction=1.0).onset == 8
    # non-finite probes never count, however large the rest of the block
    bad = np.array([1, 1, np.inf, 5, 5, 5, 5, 1.0])
    assert edge_model.edge_phase(np.arange(8.0), bad, 2.0, reach_mean=4).onset == 3
    assert edge_model.edge_phase(np.arange(3.0), np.array([3, 3, 3.0]), 2.0, reach_mean=4).onset is None
    with pytest.raises(ValueError, match="reach_mean"):
        edge_model.edge_phase(t, s, 2.0, reach_mean=0)
    with pytest.raises(ValueError, match="reach_fraction"):
        edge_model.edge_phase(t, s, 2.0, reach_fraction=1.5)


def test_climb_reads_the_rise_not_where_it_starts():
    """eos-intro's progressive-sharpening reading (the fidelity review): a series that rises to
    the edge passes; one that stays flat, falls, or jumps at the last probe does not, wherever it
    starts; the start is reported apart (the room left to climb is a precondition)."""
    t = np.arange(0, 20 * 40, 20.0)
    rng = np.random.default_rng(0)
    rising = np.concatenate([np.linspace(82, 99, 30) + 0.3 * rng.standard_normal(30),
                             100 + 3 * rng.standard_normal(10)])
    rising[30] = 101.0
    c = edge_model.climb(t, rising, 100.0)
    assert c.onset == 30 and c.window.tolist() == list(range(31))
    assert c.rank_correlation > 0.9 and c.rise_fraction > 0.8
    assert c.start_fraction == pytest.approx(rising[0] / 100)
    # flat below the edge, then one jump to it: no progressive sharpening
    jump = np.concatenate([np.full(30, 82.0), [101.0], np.full(9, 100.0)])
    j = edge_model.climb(t, jump, 100.0)
    assert j.onset == 30 and j.rise_fraction == 0.0 and j.rank_correlation < 0.5
    # flat and never reaching the edge: correlation 0, no rise
    flat = edge_model.climb(t, np.full(40, 40.0) + 1e-3 * rng.standard_normal(40), 100.0)
    assert flat.onset is None and abs(flat.rank_correlation) < 0.5 and abs(flat.rise_fraction) < 1e-3
    assert edge_model.climb(t, np.full(40, 40.0), 100.0).rank_correlation == 0.0
    # falling: negative correlation and a negative rise
    fall = edge_model.climb(t, np.linspace(80, 40, 40), 100.0)
    assert fall.rank_correlation == pytest.approx(-1.0) and fall.rise_fraction < 0
    # starting at or above the edge: nothing to read
    above = edge_model.climb(t, np.full(40, 120.0), 100.0)
    assert above.onset == 0 and np.isnan(above.rank_correlation) and np.isnan(above.rise_fraction)
    # a run that went non-finite before reaching the edge is read up to its last finite probe
    broken = np.concatenate([np.linspace(40, 60, 10), [np.nan] * 30])
    b = edge_model.climb(t, broken, 100.0)
    assert b.onset is None and b.window.size == 10 and b.rank_correlation == pytest.approx(1.0)
    with pytest.raises(ValueError, match="edge"):
        edge_model.climb(t, rising, 0.0)
