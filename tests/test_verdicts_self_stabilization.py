"""Issue 16's findings on the self-stabilization chapter, as inputs its declared rules must
grade as stated: predictions no better than their null predictors fail, the stage rules are
not tested before S(θ†) reaches 2/η, a diverged run or an overflowing prediction fails, and the
deviation claim has a rule and a null."""

import math

import pytest

from test_verdicts import NOTEBOOKS, claims_cell

NAN = float("nan")
R, P, N, T = "reproduced", "partly reproduced", "not reproduced", "not tested"


@pytest.fixture(scope="module")
def specs():
    namespace: dict = {}
    exec(compile(claims_cell(NOTEBOOKS / "self-stabilization.py"), "self-stabilization", "exec"),
         namespace)
    return {s.id: s for s in namespace["CLAIMS"]}


# a run at the edge where every prediction beats its null by a factor 4
GOOD = {
    "edge_steps": 200, "gd_diverged": 0, "cycles": 5,
    "stage_x": 0.95, "stage_x_miss": 0.05, "stage_x_null_miss": 0.4,
    "stage_y": 0.9, "stage_y_miss": 0.1, "stage_y_null_miss": 0.45,
    "sharpness_coordinate_err": 0.5, "sharpness_null_err": 2.0, "dev_over_travel": 0.1,
    "excess_loss_err": 1e-4, "excess_loss_null_err": 4e-4, "sharpness_err": 0.5,
    "deviation_err": 1e-3, "deviation_null_err": 4e-3, "x2_ratio": 1.2,
}


def test_the_good_run_reproduces_every_edge_claim(specs):
    for claim in ("four-stage-cycle", "constrained-trajectory", "predicted-dynamics",
                  "deviation", "fixed-point"):
        assert specs[claim].rule.grade(GOOD) == R, claim


def test_predictions_are_judged_against_the_null_predictors(specs):
    """Claims 3 and 6: on the excess loss L − L(θ†) and on S − 2/η, against L̂ = L(θ†) and
    Ŝ = 2/η. A prediction no better than the null fails, however small its total-loss error."""
    rule = specs["predicted-dynamics"].rule
    assert rule.grade({**GOOD, "excess_loss_err": 4e-4}) == N  # no better than L̂ = L(θ†)
    assert rule.grade({**GOOD, "sharpness_err": 2.0}) == N  # no better than Ŝ = 2/η
    assert rule.grade({**GOOD, "excess_loss_err": 2.5e-4}) == P  # 1.6× better: partly
    assert set(rule.metrics()) >= {"excess_loss_null_err", "sharpness_null_err"}
    sweep = specs["eta-sweep"].rule
    at_edge = {"sweep_n_at_edge": 3, "sweep_n_diverged": 0, "sweep_excess_err_worst": 1.0,
               "sweep_excess_null_worst": 4.0, "sweep_sharp_err_worst": 1.0,
               "sweep_sharp_null_worst": 4.0}
    assert sweep.grade(at_edge) == R
    assert sweep.grade({**at_edge, "sweep_sharp_err_worst": 4.0}) == N
    # a step size whose GD diverged fails the sweep; one whose prediction overflowed has an
    # infinite error, which fails too (the table says "prediction diverged", never "inf%")
    assert sweep.grade({**at_edge, "sweep_n_diverged": 1}) == N
    assert sweep.grade({**at_edge, "sweep_excess_err_worst": math.inf}) == N
    assert sweep.grade({**at_edge, "sweep_n_at_edge": 1}) == T


def test_stage_rules_apply_only_once_the_constrained_trajectory_is_at_the_edge(specs):
    before = {**GOOD, "edge_steps": 0}
    for claim in ("four-stage-cycle", "constrained-trajectory", "predicted-dynamics",
                  "deviation", "fixed-point"):
        assert specs[claim].rule.grade(before) == T, claim
        assert specs[claim].rule.grade({**GOOD, "edge_steps": 9}) == T, claim


def test_stage_agreement_must_beat_the_base_rate(specs):
    """|x| growing on 90% of steps: 'y > 0 ⇔ |x| grows' right on 90% is the base rate."""
    rule = specs["four-stage-cycle"].rule
    assert rule.grade({**GOOD, "stage_x": 0.9, "stage_x_miss": 0.1,
                       "stage_x_null_miss": 0.1}) == N
    # y flipping sign every step (the full-∇S y): many 'cycles' but stage_y at chance
    assert rule.grade({**GOOD, "cycles": 20, "stage_y": 0.49, "stage_y_miss": 0.51}) == N
    assert rule.grade({**GOOD, "cycles": 1}) == N


def test_a_diverged_run_fails_the_edge_claims(specs):
    diverged = {**GOOD, "gd_diverged": 1, "excess_loss_err": math.inf,
                "excess_loss_null_err": math.inf, "sharpness_err": math.inf,
                "sharpness_null_err": math.inf, "sharpness_coordinate_err": math.inf,
                "deviation_err": math.inf, "deviation_null_err": math.inf,
                "x2_ratio": math.inf, "stage_x": 0.0, "stage_y": 0.0}
    for claim in ("four-stage-cycle", "constrained-trajectory", "predicted-dynamics",
                  "deviation", "fixed-point"):
        assert specs[claim].rule.grade(diverged) == N, claim


def test_the_deviation_is_a_claim_with_a_null(specs):
    spec = specs["deviation"]
    assert spec.kind == "claim" and spec.control
    assert spec.rule.grade({**GOOD, "deviation_err": 4e-3}) == N
    assert spec.rule.grade({**GOOD, "deviation_err": math.inf}) == N  # the prediction overflowed
    assert spec.rule.grade({**GOOD, "deviation_err": NAN}) == T


def test_central_flow_must_beat_its_own_loss(specs):
    rule = specs["central-flow"].rule
    good = {"flow_compared_steps": 50, "flow_loss_err": 0.01, "flow_plain_err": 0.04,
            "flow_sharp_err": 0.02}
    assert rule.grade(good) == R
    assert rule.grade({**good, "flow_plain_err": 0.01}) == N  # σ² adds nothing
    assert rule.grade({**good, "flow_compared_steps": 0}) == T


def test_the_projection_is_a_consistency_check(specs):
    spec = specs["projection-on-M"]
    assert spec.kind == "consistency"
    assert spec.rule.grade({"pgd_edge_excess_in_tol": 0.9,
                            "projection_converged_fraction": 1.0}) == R
    assert spec.rule.grade({"pgd_edge_excess_in_tol": 5.0,
                            "projection_converged_fraction": 1.0}) == N
