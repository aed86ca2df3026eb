"""shallow-relu's declared rules against synthetic metrics: inputs each rule must fail, inputs
outside its regime that must read ``not tested``, and inputs it must pass. Also the
:class:`eoslib.book.verdicts.Partly` rule these claims use."""

import math
from pathlib import Path

import pytest

from eoslib.book import verdicts as v
from test_verdicts import claims_cell

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "shallow-relu.py"
R, P, N, T = v.VERDICTS
NAN = math.nan


@pytest.fixture(scope="module")
def rules():
    namespace: dict = {}
    exec(compile(claims_cell(NOTEBOOK), "shallow-relu", "exec"), namespace)
    specs = {s.id: s for s in namespace["CLAIMS"]}
    assert specs["lemma2.1-identity"].kind == "consistency"
    assert all(s.kind == "claim" for k, s in specs.items() if k != "lemma2.1-identity")
    return {k: s.rule for k, s in specs.items()}


# ----------------------------------------------------------------------------- Partly


def test_partly_caps_reproduced_and_keeps_the_rest():
    rule = v.Partly(v.AtMost("x", 1.0, fair=2.0))
    assert [rule.grade({"x": x}) for x in (0.5, 1.5, 3.0, NAN)] == [P, P, N, T]
    assert rule.describe() == "partly: x ≤ 1 (≤ 2: partly)"
    assert rule.explain({"x": 3.0}) == "partly: x = 3 ✗"
    assert v.passing_input(rule) is None and v.failing_input(rule) is not None


def test_partly_inside_any_of_reads_one_of_two():
    a, b = v.AtLeast("a", 1.0), v.AtLeast("b", 1.0)
    rule = v.AnyOf((v.AllOf((a, b)), v.Partly(a), v.Partly(b)))
    grid = {(1, 1): R, (1, 0): P, (0, 1): P, (0, 0): N, (1, NAN): P, (NAN, NAN): T}
    for (x, y), verdict in grid.items():
        assert rule.grade({"a": x, "b": y}) == verdict, (x, y)
    with pytest.raises(ValueError, match="must be a rule"):
        v.Partly("a ≥ 1")


# ----------------------------------------------------------------------------- Theorem 3.1


def test_phase_order_needs_the_separation_and_a_control_without_it(rules):
    rule = rules["thm3.1-phase-order"]
    done, ctrl = "lambda_minus_done_at_plus_90", "control_lambda_minus_done_at_plus_90"
    assert rule.grade({done: 0.03, ctrl: 0.85}) == R
    assert rule.grade({done: 0.03, ctrl: 0.05}) == P  # the control separates too
    assert rule.grade({done: 0.40, ctrl: 0.85}) == N  # λ₋ rose alongside λ₊
    assert rule.grade({done: NAN, ctrl: 0.85}) == T  # λ₊ never completed its rise


def test_logistic_rates_reads_distinct_rates_not_their_ratio(rules):
    rule = rules["thm3.1-logistic-rates"]
    r2, split, data = "logistic_r2_min", "rate_split", "rate_split_data"
    null = "control_rate_split"  # balanced targets: the rates should not split there
    # y_neg = 0.6: the data predict |‖d₊‖/‖d₋‖ − 1| = 0.67 (the book run measured 0.74)
    assert rule.grade({r2: 0.9999, split: 0.74, data: 0.667, null: 0.01}) == R
    # issue 32: the split's size (a± ∝ ‖d±‖) is thm3.1-rate-prediction's hypothesis, scored
    # there once; here any clear split is the paper's "a₊ ≠ a₋"
    assert rule.grade({r2: 0.9999, split: 0.30, data: 0.667, null: 0.01}) == R
    assert rule.grade({r2: 0.9999, split: 0.02, data: 0.667, null: 0.01}) == P  # equal rates
    assert "rate_split_data" not in str(rule.rule.describe())  # the ratio is not read
    assert rule.grade({r2: 0.80, split: 0.74, data: 0.667, null: 0.01}) == N  # not logistic
    assert rule.grade({r2: 0.80, split: 0.02, data: 0.667, null: 0.01}) == N
    # balanced targets (y_neg = 1): the theorem predicts no split, the claim is not tested
    assert rule.grade({r2: 0.9999, split: 0.01, data: 0.0, null: 0.01}) == T
    # the null splits as much: the split is not the data's
    assert rule.grade({r2: 0.9999, split: 0.74, data: 0.667, null: 0.5}) == P


UPPER = ("phase1_lambda_plus_over_bound", "phase1_lambda_minus_over_bound",
         "phase2_lambda_minus_over_bound")


def test_upper_bounds_partly_when_some_fail_and_not_when_all_do(rules):
    rule = rules["thm3.1-upper-bounds"]
    assert rule.grade(dict(zip(UPPER, (0.5, 0.3, 0.2)))) == R  # every maximum > 0: tested
    assert rule.grade(dict(zip(UPPER, (0.5, 0.3, 2.0)))) == P
    assert rule.grade(dict(zip(UPPER, (3.0, 3.0, 3.0)))) == N


def test_upper_bounds_that_hold_by_sign_alone_are_not_tested(rules):
    rule = rules["thm3.1-upper-bounds"]
    # the book run: the three maxima were ≤ 0 (λ± start at −‖d±‖), recorded as NaN. The old
    # single claim then rested on the asymptote alone; split off, the upper bounds are not tested
    assert rule.grade(dict(zip(UPPER, (NAN,) * 3))) == T
    assert rule.grade(dict(zip(UPPER, (NAN, NAN, 3.0)))) == N  # the one testable bound fails


def test_asymptotes_are_their_own_claim(rules):
    rule = rules["thm3.1-asymptotes"]
    assert rule.grade({"plateau_over_asymptote_min": 16.1}) == R
    assert rule.grade({"plateau_over_asymptote_min": 0.5}) == N
    assert rule.grade({"plateau_over_asymptote_min": NAN}) == T
    assert "thm3.1-bounds" not in rules


def test_rate_prediction_is_a_relative_error_of_20_percent(rules):
    rule = rules["thm3.1-rate-prediction"]
    base = {"lambda_plus_rate_predicted": 0.1, "lambda_minus_rate_predicted": 0.05}
    assert rule.grade({**base, "lambda_plus_rate": 0.099, "lambda_minus_rate": 0.048}) == R
    assert rule.grade({**base, "lambda_plus_rate": 0.099, "lambda_minus_rate": 0.07}) == N


def test_sweep_phases(rules):
    rule = rules["thm3.1-sweep-phases"]
    frac, mono = "sweep_phase_order_fraction", "sweep_gap_monotone"
    # issue 32: the fraction counts members in the regime mλ² ≤ min|y| whose run showed the
    # phases (35/35 with λ ≤ 1e-3 at book scale); λ = 0.1 members (mλ² = 1.28) are not pooled
    assert rule.grade({frac: 1.0, mono: 1.0}) == R
    assert rule.grade({frac: 0.95, mono: 1.0}) == R
    assert rule.grade({frac: 0.59, mono: 1.0}) == P  # the book run before this conversion
    assert rule.grade({frac: 0.50, mono: 0.0}) == N
    assert rule.grade({frac: 0.95, mono: NAN}) == P  # the trend not measured: partial
    assert rule.grade({frac: NAN, mono: NAN}) == T  # no member with non-empty S₁,±


def test_balance(rules):
    assert rules["lemma2.1-phase1-balance"].grade(
        {"phase1_sqrt_max_imbalance_over_lambda": 0.43}) == R
    assert rules["lemma2.1-phase1-balance"].grade(
        {"phase1_sqrt_max_imbalance_over_lambda": 2.0}) == N
    assert rules["lemma2.1-identity"].grade({"balance_identity_max_error": 1e-6}) == N


# ----------------------------------------------------------------------------- CIFAR-10


@pytest.mark.parametrize("suffix, act", [("", "relu"), ("_tanh", "tanh")])
def test_edge_one_by_one(rules, suffix, act):
    rule = rules[f"edge-one-by-one-{act}"]
    n, distinct, cv = (f"n_eigs_at_edge{suffix}", f"edge_distinct_entry_steps{suffix}",
                       f"edge_growth_rate_cv{suffix}")
    stop, div = f"edge_stop_step{suffix}", f"edge_diverged{suffix}"
    trained = {stop: 180, div: 0}  # reached the paper's 99 % accuracy at step 180
    assert rule.grade({n: 3, distinct: 3, cv: 0.4, **trained}) == R
    # only λ₁ at the edge of a run that reached 99 %: the others did not follow
    assert rule.grade({n: 1, distinct: 1, cv: NAN, **trained}) == N
    # ... of a run capped before 99 % accuracy: the others had no chance yet
    assert rule.grade({n: 1, distinct: 1, cv: NAN, stop: -1, div: 0}) == T
    assert rule.grade({n: 3, distinct: 1, cv: 0.4, **trained}) == P  # all at once, distinct rates
    assert rule.grade({n: 3, distinct: 3, cv: 0.01, **trained}) == P  # one by one, one rate
    assert rule.grade({n: 3, distinct: 1, cv: 0.01, **trained}) == N  # all at once, at one rate
    assert rule.grade({n: 0, distinct: 0, cv: NAN, **trained}) == T  # the edge never reached
    # issue 32: a diverged run is not reproduced (it was NaN, read as not tested)
    assert rule.grade({n: 1, distinct: 1, cv: NAN, stop: -1, div: 1}) == N
    assert rule.grade({n: NAN, distinct: NAN, cv: NAN, stop: NAN, div: NAN}) == T  # not run


def test_decay_needs_an_oscillating_control(rules):
    rule = rules["decay-eta-over-4"]
    good = {"decay_runs": 4, "decay_control_loss_up_min": 0.3, "post_decay_loss_up_max": 0.0,
            "post_decay_sharpness_down_max": 0.0, "post_decay_rate_cv_max": 0.1,
            "post_decay_sharpness_rise_min": 0.3}
    assert rule.grade(good) == R
    # the review: a λ₁ that never falls but does not rise either is not "monotone sharpening"
    assert rule.grade({**good, "post_decay_sharpness_rise_min": 0.01}) == N
    assert rule.grade({**good, "post_decay_sharpness_rise_min": 0.05}) == R
    assert rule.grade({**good, "post_decay_rate_cv_max": 0.52}) == P  # rate not constant
    # one decay step per activation: no CV, but the monotone part was measured
    assert rule.grade({**good, "post_decay_rate_cv_max": NAN}) == P
    assert rule.grade({**good, "post_decay_rate_cv_max": NAN,
                       "post_decay_loss_up_max": 0.2}) == N
    assert rule.grade({**good, "post_decay_loss_up_max": 0.2}) == N  # still oscillating
    assert rule.grade({**good, "post_decay_sharpness_down_max": math.inf}) == N  # diverged
    # the main run at η did not oscillate either: nothing for the decay to stop
    assert rule.grade({**good, "decay_control_loss_up_min": 0.0}) == T
    assert rule.grade({**good, "decay_runs": 0}) == T


def test_depth(rules):
    rule = rules["appendix-c-depth"]
    base = {"n_depths_measured": 3, "depth_window_min_probes": 12}
    nd, diff = "depth_slope_non_decreases", "depth_slope_deepest_minus_shallowest"
    # issue 32: the book run's λ₁ slopes 0.58, 0.32, 0.22 per step fall with depth (its
    # log-rates 0.0051, 0.0061, 0.0084 rose: that reading is recorded, not scored)
    assert rule.grade({**base, nd: 0, diff: 0.22 - 0.58}) == R
    assert rule.grade({**base, nd: 1, diff: -0.1}) == P
    assert rule.grade({**base, nd: 2, diff: 0.3}) == N
    assert rule.grade({"n_depths_measured": 0, nd: NAN, diff: NAN}) == T
    # the review: a window of two probes (depth 1 stopped at step 59, probes every 50) makes
    # each "slope" a line through two points: not tested, whatever the slopes say
    assert rule.grade({**base, "depth_window_min_probes": 2, nd: 0, diff: -0.3}) == T
    assert rule.grade({**base, "depth_window_min_probes": 3, nd: 2, diff: 0.3}) == T
    assert rule.grade({**base, "depth_window_min_probes": 4, nd: 2, diff: 0.3}) == N


def test_no_claim_that_no_run_can_grade(rules):
    # App. C's width/activation/loss grid is not run by the chapter, so it declares no claim
    # on it (a claim hard-wired to "not tested" at every scale)
    assert "appendix-c-grid" not in rules
