"""Issue 16's findings on kappa-dynamics, as inputs its declared rules must not pass.

The claims cell runs on its own (as in tests/test_verdicts.py); every test feeds the rules
synthetic metrics shaped like a run that has the reviewed defect, and one that has not.
"""

import math

import numpy as np
import pytest

from eoslib.book import verdicts as v
from eoslib.mechanisms import kappa
from test_verdicts import NOTEBOOKS, claims_cell

R, P, N, T = v.VERDICTS
NAN = math.nan


@pytest.fixture(scope="module")
def specs():
    namespace: dict = {}
    exec(compile(claims_cell(NOTEBOOKS / "kappa-dynamics.py"), "kappa-dynamics", "exec"), namespace)
    return {s.id: s for s in namespace["CLAIMS"]}


MODEL = {"exit_fraction_min": 0.2, "roundoff_exits": 0, "case1_median_drift": -0.3,
         "case1_median_rise_max": -1.0, "case1_skewness": 0.9, "case1_mode_minus_median": -0.5,
         "branch_violations": 0, "branch_mean_max": 1e-16, "n_relaxed_cases": 2,
         "relaxed_null_spread_growth_min": 9.8, "relaxed_median_excess_max": -30.0,
         "relaxed_mode_minus_median_max": -0.2, "relaxed_skewness_excess_min": 80.0}


def test_the_simulated_model_needs_reachable_absorption(specs):
    theorems, relaxed = specs["model-theorems"], specs["model-beyond-theorems"]
    assert theorems.kind == "consistency" and relaxed.kind == "claim"
    assert theorems.rule.grade(MODEL) == R and relaxed.rule.grade(MODEL) == R
    # g ∝ s near the exit: in exact arithmetic no walk is ever absorbed; the model with its
    # exit (Asp. 5.2) was not simulated, so the theorems' check is not tested, whatever the
    # medians did; the claim beyond them is graded with the exit off, so absorption is moot
    never = {**MODEL, "exit_fraction_min": 0.0}
    assert theorems.rule.grade(never) == T and relaxed.rule.grade(never) == R
    # exits decided by round-off (exp(log κ) − 1 ≤ 0 in float32 while the exact s > 0)
    roundoff = {**MODEL, "roundoff_exits": 37}
    assert theorems.rule.grade(roundoff) == N and relaxed.rule.grade(roundoff) == R


def test_case_one_median_rises_and_two_step_pattern(specs):
    rule = specs["model-theorems"].rule
    assert rule.grade({**MODEL, "case1_median_rise_max": 5.0}) == N  # 5 standard errors up
    assert rule.grade({**MODEL, "case1_median_rise_max": 1.0}) == R  # within sampling noise
    assert rule.grade({**MODEL, "branch_mean_max": 1e-7}) == N  # not a martingale (float32)
    assert rule.grade({**MODEL, "case1_mode_minus_median": 0.1}) == N
    # Cases II and III not simulated: the relaxed claim is not tested, Case I still graded
    only_one = {**MODEL, "n_relaxed_cases": 0, "relaxed_median_excess_max": NAN}
    assert specs["model-beyond-theorems"].rule.grade(only_one) == T
    assert specs["model-beyond-theorems"].rule.grade({**MODEL, "relaxed_median_excess_max": 2.0}) == N


def test_beyond_the_theorems_is_judged_against_a_constant_step_null_without_the_exit(specs):
    """Review of f6ffaa6: the old rule graded the statistics of all walks, absorbed ones at
    their exit value. With 85% absorbed (the stored book run) the median sat in the pile of
    exits (drift −1.009) and the law was right-skewed whatever the step did: a constant-step
    walk with the same exit shows both. The rule now reads the walks with the exit off against
    their constant-step null, so a run whose medians fall only by absorption fails."""
    spec = specs["model-beyond-theorems"]
    assert spec.kind == "claim" and "constant step" in spec.control
    # the defect's shape: the absorbed statistics look like the claim (the old metrics are no
    # longer read) but with the exit off the model's median is where the null's is
    absorbed_only = {**MODEL, "exit_fraction_min": 0.85, "relaxed_median_drift_max": -1.009,
                     "relaxed_skewness_min": 3.08, "relaxed_median_excess_max": -0.5}
    assert spec.rule.grade(absorbed_only) == N
    # a right tail no larger than the constant-step null's: no skew from the state dependence
    assert spec.rule.grade({**MODEL, "relaxed_skewness_excess_min": 1.0}) == N
    assert spec.rule.grade({**MODEL, "relaxed_mode_minus_median_max": 0.05}) == N
    # walks that barely moved (the null's spread did not even double): no evidence either way
    assert spec.rule.grade({**MODEL, "relaxed_null_spread_growth_min": 1.2,
                            "relaxed_median_excess_max": -0.5}) == T


def test_kappa_variability_is_judged_by_its_size_over_several_seeds(specs):
    rule = specs["kappa-variability"].rule
    # one seed is no spread: a single seed moved 0.32 → 0.69 from a rounding-level change
    assert rule.grade({"seeds_measured": 1, "variability_pearson_mean": 0.69}) == T
    far = {"seeds_measured": 3, "variability_pearson_t": 6.0}  # well clear of 0 across seeds
    assert rule.grade({**far, "variability_pearson_mean": 0.60}) == R
    assert rule.grade({**far, "variability_pearson_mean": 0.34}) == P
    # positive and "significant" but far from 0.59 in size: not the paper's correlation
    assert rule.grade({**far, "seeds_measured": 15, "variability_pearson_mean": 0.15}) == N
    assert rule.grade({**far, "seeds_measured": 15, "variability_pearson_mean": -0.4}) == N


def test_kappa_variability_uses_its_declared_control_of_no_correlation(specs):
    """Review of f6ffaa6: the control "no correlation (0), and the seed-to-seed spread" was
    declared but not read; a seed mean of 0.30 graded "partly" however wide the spread. The
    smoke run's shape: seeds −0.28 and 0.96, mean 0.34 with t = 0.55 against no correlation."""
    rule = specs["kappa-variability"].rule
    spread = {"seeds_measured": 2, "variability_pearson_mean": 0.34, "variability_pearson_t": 0.55}
    assert rule.grade(spread) == N
    assert rule.grade({**spread, "variability_pearson_mean": 0.30}) == N
    assert rule.grade({**spread, "variability_pearson_t": 3.1}) == P  # same mean, seeds agree


ROTATION = {"rotation_instabilities": 2, "rotation_start_ratio": 1.05, "rotation_drop": 0.2,
            "reversal_gain": 0.10, "reversal_gain_control": 0.01}


def test_reversal_is_judged_against_the_kept_eta_control(specs):
    rule = specs["rotation-and-reversal"].rule
    assert rule.grade(ROTATION) == R
    # the switched runs rise no more than the kept-η run does on its own: no reversal
    assert rule.grade({**ROTATION, "reversal_gain": 0.05, "reversal_gain_control": 0.05}) == N
    # every switched run rises a little (the old rule: "s_end > s_at") but below the margin
    assert rule.grade({**ROTATION, "reversal_gain": 0.001, "reversal_gain_control": 0.0}) == N
    # no rotation to reverse
    assert rule.grade({**ROTATION, "rotation_drop": 0.005}) == N
    # the replay did not start inside an instability, or the run had none: not tested
    assert rule.grade({**ROTATION, "rotation_start_ratio": 0.9}) == T
    assert rule.grade({**ROTATION, "rotation_instabilities": 0}) == T


FLAT = {"smax_peak_reached_fraction": 1.0, "flattening_diverged": 0,
        "smax_later_change": -0.2, "smax_eta0_change": -0.3}


def test_flattening_needs_a_peaked_stable_phase_and_a_fall(specs):
    rule = specs["progressive-flattening"].rule
    assert rule.grade(FLAT) == R
    assert rule.grade({**FLAT, "smax_peak_reached_fraction": 0.75}) == T  # still rising
    assert rule.grade({**FLAT, "smax_later_change": 0.07}) == N
    assert rule.grade({**FLAT, "smax_eta0_change": 0.1}) == N
    assert rule.grade({**FLAT, "smax_later_change": -0.02}) == P
    assert rule.grade({**FLAT, "flattening_diverged": 1}) == N


def test_the_measured_smax_window_excludes_the_reduction_step():
    """What the chapter measures, not only how it grades: with the EoS-level sharpness at the
    reduction step, a window that included it would report that level as S_max and call it a
    peak; the chapter's window starts after the reduction step."""
    steps = np.arange(0, 200, 10)
    s = np.concatenate([[20.0], np.linspace(5, 12, 10), np.linspace(11.5, 8, 9)])
    smax, peaked = kappa.stable_peak(steps, s, 0, 190)
    assert smax == pytest.approx(12.0) and peaked
    including = float(np.max(s[(steps >= 0) & (steps <= 190)]))
    assert including == 20.0 != smax
    # a stable phase cut off while still sharpening has not peaked: flattening is not tested
    assert not kappa.stable_peak(steps, s, 0, 100)[1]
