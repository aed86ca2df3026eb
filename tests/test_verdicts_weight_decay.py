"""Issue 16's findings on the weight-decay chapter, as inputs its declared rules must grade the
right way: no CNN is not tested; a crossing only once α → 0, or a control that aligns too, is not
reproduced; the toy is a consistency check; the intervention is tested only where the channel was
removed. The claims cell runs alone, as tests/test_verdicts.py runs it."""

import math

import numpy as np
import pytest

from eoslib.book import verdicts as v
from eoslib.mechanisms import edge_model
from test_verdicts import NOTEBOOKS, claims_cell

NAN = float("nan")
R, P, N, T = "reproduced", "partly reproduced", "not reproduced", "not tested"
PATH = NOTEBOOKS / "weight-decay.py"


@pytest.fixture(scope="module")
def specs():
    namespace: dict = {}
    exec(compile(claims_cell(PATH), str(PATH), "exec"), namespace)
    return {s.id: s for s in namespace["CLAIMS"]}


@pytest.fixture(scope="module")
def rules(specs):
    return {k: s.rule for k, s in specs.items()}


def test_every_claim_can_fail_and_pass(specs):
    v.assert_claims_can_fail(list(specs.values()))


def test_no_cnn_is_not_tested(rules):
    """Review: the alignment claim passed with no CNN (all([])); the CNN claims must read
    not tested until a CNN runs (here or stored), never reproduced or failed."""
    no_cnn = {"cnn_runs": 0, "cnn_damping_rate": NAN, "cnn_damping_excess": NAN,
              "cnn_decayed_stopped": 0, "cnn_aligned_fraction": NAN}
    assert rules["cnn-damping"].grade(no_cnn) == T
    assert rules["cnn-no-alignment"].grade(no_cnn) == T
    # and the MLP alignment claim does not depend on the CNN at all
    assert not set(rules["alignment-mechanism"].metrics()) & set(no_cnn)
    damped = {"cnn_runs": 2, "cnn_damping_rate": 5e-4, "cnn_damping_excess": 4e-4}
    assert rules["cnn-damping"].grade(damped) == R
    assert rules["cnn-damping"].grade({**damped, "cnn_damping_rate": -1e-4}) == N
    stopped = {"cnn_decayed_stopped": 1}
    assert rules["cnn-no-alignment"].grade({**stopped, "cnn_aligned_fraction": 0.0}) == R
    assert rules["cnn-no-alignment"].grade({**stopped, "cnn_aligned_fraction": 1.0}) == N


ALIGNED = {"plateau_gamma0_edge_err": 0.002, "control_plateau_edge_ratio": 0.99,
           "treated_aligned_fraction": 1.0, "control_aligned": 0.0}


def test_alignment_needs_a_control_that_reaches_the_edge_without_aligning(rules):
    rule = rules["alignment-mechanism"]
    assert rule.grade(ALIGNED) == R
    # the control also aligns before S stops: alignment does not tell the regimes apart
    assert rule.grade({**ALIGNED, "control_aligned": 1.0}) == N
    # review finding: "at small γ S reaches 2/η − γ" is half the claim, so a control that
    # stops below its edge refutes it (it was the precondition, and read not tested)
    assert rule.grade({**ALIGNED, "control_plateau_edge_ratio": 0.88}) == N
    # the evidence is missing only when the run is too short for even γ = 0 to reach 2/η
    assert rule.grade({**ALIGNED, "control_plateau_edge_ratio": 0.88,
                       "plateau_gamma0_edge_err": 0.4}) == T
    # ... or when γ = 0 diverged (recorded as ∞, no crash)
    assert rule.grade({**ALIGNED, "plateau_gamma0_edge_err": math.inf}) == T
    # a control that diverged is recorded as aligned (a value the rule rejects)
    assert rule.grade({**ALIGNED, "control_plateau_edge_ratio": math.inf,
                       "control_aligned": 1.0}) == N


def test_a_crossing_only_once_alpha_vanishes_is_not_reproduced(rules):
    """Review: once S stops, α → 0 and c_y ≥ α/γ holds for any run. A crossing after the stop
    does not count, so a treated run that crosses only then grades not reproduced."""
    t = np.arange(10)
    s = np.array([10, 30, 50, 70, 78, 80, 80, 80, 80, 80.0])
    c_y = np.full(10, 2.0)
    c_crit = np.array([0.0, 5, 5, 5, 5, 5, 0.01, 0, 0, 0])  # α/γ falls below c_y only after
    stop = edge_model.stop_index(s, edge_model.plateau(t, s, 100.0).level)
    assert stop == 4
    crossed = edge_model.aligned_before_stop(c_y, c_crit, stop)
    assert crossed is False
    assert rules["alignment-mechanism"].grade(
        {**ALIGNED, "treated_aligned_fraction": float(crossed)}) == N
    # a treated run that never stopped rising is not measured: the claim is not tested
    assert rules["alignment-mechanism"].grade({**ALIGNED, "treated_aligned_fraction": NAN}) == T


def test_phase_transition_against_its_gamma_zero_control(rules):
    rule = rules["mlp-phase-transition"]
    good = {"plateau_gamma0_edge_err": 0.002, "plateau_ratio_max_seeds": 0.77,
            "late_drift_max_seeds": 0.03}
    assert rule.grade(good) == R
    assert rule.grade({**good, "plateau_ratio_max_seeds": 0.99}) == N  # at the edge too
    assert rule.grade({**good, "late_drift_max_seeds": 0.2}) == N  # still rising
    assert rule.grade({**good, "plateau_ratio_max_seeds": math.inf}) == N  # a seed diverged
    # γ = 0 never reached 2/η: a low plateau cannot be told from slower sharpening
    assert rule.grade({**good, "plateau_gamma0_edge_err": 0.77}) == T
    # a diverged γ = 0 run is recorded as ∞ (it used to crash the chapter's invariant cell)
    assert rule.grade({**good, "plateau_gamma0_edge_err": math.inf}) == T


def test_slows_sharpening_rejects_a_negligible_slowdown(rules):
    rule = rules["slows-sharpening"]
    good = {"sharpening_gamma0": 0.5, "sharpening_order_fraction": 1.0,
            "sharpening_rise_ratio": 0.3}
    assert rule.grade(good) == R
    # ordered, but the largest γ sharpens 99% as much as γ = 0: not a slowdown
    assert rule.grade({**good, "sharpening_rise_ratio": 0.99}) == N
    assert rule.grade({**good, "sharpening_gamma0": 0.01}) == T  # γ = 0 did not sharpen


def test_ntk_needs_probes_and_a_baseline_at_the_edge(rules):
    rule = rules["ntk-stabilises"]
    base = {"ntk_late_probes": 6, "plateau_gamma0_edge_err": 0.01}
    assert rule.grade({**base, "ntk_spread_gamma": 0.02, "ntk_spread_gamma0": 0.1}) == R
    assert rule.grade({**base, "ntk_spread_gamma": 0.04, "ntk_spread_gamma0": 0.03}) == N
    # one probe in the last quarter: spreads of 0 measure nothing
    assert rule.grade({**base, "ntk_late_probes": 1, "ntk_spread_gamma": 0.0,
                       "ntk_spread_gamma0": 0.0}) == T


def test_intervention_is_tested_only_where_the_channel_was_removed(rules):
    rule = rules["alignment-intervention"]
    run = {"plateau_gamma0_edge_err": 0.002, "plateau_ratio_plain": 0.77,
           "intervention_channel_residual": 0.02, "intervention_plateau": 95.0,
           "edge_minus_gamma": 99.98}
    assert rule.grade(run) == R
    assert rule.grade({**run, "intervention_plateau": 78.0}) == N  # the plateau survives
    # the projection left half of c_y: the channel was not removed, nothing was tested
    assert rule.grade({**run, "intervention_channel_residual": 0.5}) == T
    assert rule.grade({**run, "plateau_ratio_plain": 0.99}) == T  # no plateau to remove


def test_toy_is_a_consistency_check(specs):
    toy = specs["toy-threshold-and-damping"]
    assert toy.kind == "consistency"
    exact = {"toy_model_gap": 1e-14, "toy_shift_rel_err": 0.003,
             "toy_damping_rel_err_max": 0.03, "toy_stop_rel_err_max": 1e-10,
             "toy_shift": -0.1, "toy_gamma": 0.1, "toy_damping_measured": [2.9e-4],
             "toy_damping_predicted": [3e-4], "toy_stop": [180.0], "toy_stop_predicted": [180.0]}
    assert v.grade(toy, exact, scale="smoke").verdict == "holds"
    assert v.grade(toy, {**exact, "toy_shift_rel_err": 10.0}, scale="smoke").verdict == "fails"
    assert [s.kind for s in specs.values()].count("claim") == len(specs) - 1


def test_the_chapter_states_its_conventions_in_prose():
    text = PATH.read_text()
    assert "½MSE" in text and "(c\\eta, \\gamma/c)" in text  # the loss convention and γ's map
    assert "Euler" in text and "ReLU CNN" in text  # c_y ∝ S is homogeneity, CNNs included
