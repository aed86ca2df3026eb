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


ALIGNED = {"plateau_gamma0_edge_err": 0.002, "gamma0_reached": 1.0,
           "control_plateau_edge_ratio": 0.99, "control_reached": 1.0,
           "treated_aligned_fraction": 1.0, "control_aligned": 0.0}
INTERVENTION = {"plateau_gamma0_edge_err": 0.002, "gamma0_reached": 1.0,
                "twin_sub_edge_ratio": 0.82, "intervention_channel_residual": 0.02,
                "intervention_plateau": 97.5, "intervention_reached": 1.0,
                "edge_minus_gamma": 99.98, "twin_rise": -0.005}


def test_alignment_is_scored_once_and_reads_no_drift_it_does_not_use(specs, rules):
    """Review (long, D2–D3): the alignment rule was gated on the treated seeds' drift, which it
    never reads, and below the edge ΔS ≈ η(α − γc_y) makes its treated half the phase transition
    again: it is a consistency check (not scored), and its rule reads no drift at all."""
    assert specs["alignment-mechanism"].kind == "consistency"
    assert "first order" in specs["alignment-mechanism"].claim
    assert not any("drift" in m or "rise" in m for m in rules["alignment-mechanism"].metrics())
    assert rules["alignment-mechanism"].grade(ALIGNED) == R
    assert v.grade(specs["alignment-mechanism"], {**ALIGNED, **_ours_fill()},
                   scale="long").verdict == "holds"


def test_the_intervention_is_gated_on_its_twin_only(rules):
    """Review (long, D4): the intervention was gated on 5 seeds it does not read and on a line
    drift of an edge-oscillating run; it reads the twin's signed rise and the edge-phase level."""
    rule = rules["alignment-intervention"]
    assert set(rule.metrics()) == set(INTERVENTION)
    assert rule.grade(INTERVENTION) == R
    assert rule.grade({**INTERVENTION, "twin_rise": 0.036}) == T  # the twin still rising
    assert rule.grade({**INTERVENTION, "twin_rise": -0.03}) == R  # falling: it has stopped
    assert rule.grade({**INTERVENTION, "twin_rise": math.inf}) == T  # the twin diverged
    # the long run's projected-decay run cycles at the edge in slow cycles; its edge-phase level
    # on the old long traces was 97.5 (re-review): a cycle about that level reads reproduced
    t = np.arange(0, 14000, 100.0)
    s = np.where(t < 1000, 20 + 0.08 * t, 97.5 + 11.5 * np.sin(2 * np.pi * t / 1500))
    ep = edge_model.edge_phase(t, s, 99.98, drift="quarters", unreached="finite")
    assert ep.onset is not None and abs(ep.level / 99.98 - 1) < 0.05
    assert rule.grade({**INTERVENTION, "intervention_plateau": ep.level}) == R
    # the same cycle about 93.5 (S between 82 and 105) is below the one edge threshold (0.95)
    s_low = np.where(t < 1000, 20 + 0.08 * t, 93.5 + 11.5 * np.sin(2 * np.pi * t / 1500))
    ep_low = edge_model.edge_phase(t, s_low, 99.98, drift="quarters", unreached="finite")
    assert ep_low.level / 99.98 < 0.95
    assert rule.grade({**INTERVENTION, "intervention_plateau": ep_low.level}) == N
    # a run that stays below the edge is read (unreached="finite"), and refutes the claim
    low = edge_model.edge_phase(t, 0.8 * s.clip(max=95), 99.98, drift="quarters",
                                unreached="finite")
    assert low.onset is None
    assert rule.grade({**INTERVENTION, "intervention_plateau": low.level,
                       "intervention_reached": 0.0}) == N


def test_one_edge_threshold_and_the_edge_must_be_reached(specs, rules):
    """Re-review (defect 3): three edge thresholds (0.90 baseline, 0.95 control, 10% intervention)
    and a level accepted without a reach. One threshold, AT_EDGE = 0.95, and the onset must exist:
    the book's γ = 0 run (mean 83.8 of a run still rising, never at 2/η) and the book's projected
    run (95.5, never reached 99.98) are not at their edges."""
    ns: dict = {}
    exec(compile(claims_cell(PATH), str(PATH), "exec"), ns)
    assert ns["AT_EDGE"] == 0.95
    phase = rules["mlp-phase-transition"]
    good = {"plateau_gamma0_edge_err": 0.03, "gamma0_reached": 1.0,
            "plateau_ratio_max_seeds": 0.75, "peak_ratio_max_seeds": 0.82,
            "late_rise_max_seeds": -0.005}
    assert phase.grade(good) == R
    assert phase.grade({**good, "plateau_gamma0_edge_err": 0.08}) == T  # 0.92: not at the edge
    assert phase.grade({**good, "gamma0_reached": 0.0}) == T  # level fine, never reached
    # the intervention: 0.92 of the edge is not at it (it was, under the old 10%)
    assert rules["alignment-intervention"].grade(
        {**INTERVENTION, "intervention_plateau": 0.92 * 99.98}) == N
    # the book run: 95.5 of 99.98 but never reached its edge
    assert rules["alignment-intervention"].grade(
        {**INTERVENTION, "intervention_plateau": 95.5, "intervention_reached": 0.0}) == N
    # the control reads the same threshold and the same reach
    align = rules["alignment-mechanism"]
    assert align.grade({**ALIGNED, "control_plateau_edge_ratio": 0.94}) == N
    assert align.grade({**ALIGNED, "control_reached": 0.0}) == N
    assert align.grade({**ALIGNED, "control_plateau_edge_ratio": 0.96}) == R
    # the γ = 0 gate is named beside every verdict it can block
    for cid in ("mlp-phase-transition", "alignment-mechanism", "alignment-intervention"):
        assert any("γ = 0 baseline" in d.what for d in specs[cid].departures), cid


def test_the_twin_gate_reads_peak_and_plateau(rules):
    """Re-review (defect 4): a twin that peaked at 0.95 and fell to 0.85 qualified as sub-edge.
    The gate reads max(peak, plateau) ≤ 0.9, as the phase transition does."""
    rule = rules["alignment-intervention"]
    assert "twin_sub_edge_ratio" in rule.metrics()
    assert "plateau_ratio_plain" not in rule.metrics()
    assert rule.grade({**INTERVENTION, "twin_sub_edge_ratio": max(0.95, 0.85)}) == T
    assert rule.grade({**INTERVENTION, "twin_sub_edge_ratio": max(0.82, 0.75)}) == R
    assert "max(peak_ratio_seeds[0], level[i_star] / (edge - P.gamma))" in PATH.read_text()


def _ours_fill():
    """Every metric the alignment-mechanism's ours template names (values irrelevant here)."""
    return {"treated_crossing_steps": [1500], "treated_crossing_s_ratio": [0.7],
            "treated_aligned": [1.0], "treated_stop_steps": [3600], "control_gamma": 0.0025,
            "control_crossing_step": -1, "control_crossing_s_ratio": NAN,
            "n_train": 500, "steps": 14000, "n_seeds": 5, "at_edge_tol": 0.05,
            "plateau_gamma0": 99.5, "gamma0_last": 100.2, "gamma0_drift": 0.001}


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
    good = {"plateau_gamma0_edge_err": 0.002, "gamma0_reached": 1.0, "plateau_ratio_max_seeds": 0.77,
            "peak_ratio_max_seeds": 0.82, "late_rise_max_seeds": 0.004}
    assert rule.grade(good) == R
    assert rule.grade({**good, "plateau_ratio_max_seeds": 0.99,
                       "peak_ratio_max_seeds": 0.99}) == N  # at the edge too
    # peaked at the edge and fell back below it: not "well below the edge" throughout
    assert rule.grade({**good, "peak_ratio_max_seeds": 0.99}) == N
    assert rule.grade({**good, "plateau_ratio_max_seeds": math.inf}) == N  # a seed diverged
    # γ = 0 never reached 2/η: a low plateau cannot be told from slower sharpening
    assert rule.grade({**good, "plateau_gamma0_edge_err": 0.77}) == T
    # a diverged γ = 0 run is recorded as ∞ (it used to crash the chapter's invariant cell)
    assert rule.grade({**good, "plateau_gamma0_edge_err": math.inf}) == T


def test_a_plateau_still_rising_is_not_tested_and_a_falling_one_is_graded(rules, specs):
    """Issue 31: at γ = 0.02 the book run's S still rose 75.5 → 79.4 over its last quarter: too
    short to decide. Review (long, D1): the gate was two-sided and grew with the horizon, so the
    long run's seeds, which peak at 76–82 and then *fall* 0.5–0.8 per 1,000 steps, read not
    tested. The gate is one-sided, on the rise per 1,000 steps of 2/η: a falling S cannot break
    an upper bound."""
    rule = rules["mlp-phase-transition"]
    long = {"plateau_gamma0_edge_err": 0.002, "gamma0_reached": 1.0, "plateau_ratio_max_seeds": 0.749,
            "peak_ratio_max_seeds": 0.823, "late_rise_max_seeds": -0.0054}
    assert rule.grade(long) == R
    assert rule.grade({**long, "late_rise_max_seeds": 0.048}) == T  # the book run: rising
    assert rule.grade({**long, "late_rise_max_seeds": 0.01}) == R
    assert rule.grade({**long, "late_rise_max_seeds": math.inf}) == T  # a seed diverged
    stored = rules["paper-scale-phase-transition"]
    ok = {"paper_n_seeds": 5, "paper_plateau_ratio_max_seeds": 0.8,
          "paper_peak_ratio_max_seeds": 0.82, "paper_gamma0_reached": 1.0,
          "paper_gamma0_edge_err": 0.01, "paper_late_rise_max_seeds": -0.03}
    assert stored.grade({**ok, "paper_late_rise_max_seeds": 0.03}) == T
    assert stored.grade(ok) == R
    # re-review (defect 5): the stored γ = 0 member is read, and the peak too
    assert stored.grade({**ok, "paper_gamma0_reached": 0.0}) == T
    assert stored.grade({**ok, "paper_gamma0_edge_err": 0.2}) == T
    assert stored.grade({**ok, "paper_peak_ratio_max_seeds": 0.99}) == N
    # one slope reads one rate at any horizon (the old per-quarter drift grew 4.7× to 14,000)
    for steps in (3000, 14000):
        t = np.arange(0, steps + 1, 100.0)
        assert edge_model.plateau(t, 80 - 0.0007 * t, 100.0, per=1000).drift == (
            pytest.approx(-0.007))


def test_the_identity_check_reads_the_bias_in_the_settling_rules_units(specs):
    """Review (long, D3): measured ΔS exceeded η(α − γc_y) by 0.3–1.0 per 100 steps, so c_y
    crossed α/γ ≈ 2,000 steps before S stopped. A consistency check, failing beyond the
    resolution of the settling rule (MAX_DRIFT of 2/η per 1,000 steps)."""
    check = specs["sharpening-identity"]
    assert check.kind == "consistency"
    run = {"identity_probes": 139, "identity_bias_max": 0.002,
           "identity_bias_seeds": [0.002], "identity_bias_alpha_seeds": [0.01],
           "treated_crossing_steps": [2000], "eig_residual_max": 1e-3, "fd_steps": 10,
           "fd_ratio": 1.0, "fd_midpoint_residual": 1e-3,
           "treated_stop_steps": [3600], "top2_ratio_median": 0.9, "top2_ratio_max": 0.95}
    assert v.grade(check, run, scale="long").verdict == "holds"
    assert v.grade(check, {**run, "identity_bias_max": 0.05}, scale="long").verdict == "fails"
    assert v.grade(check, {**run, "identity_probes": 1}, scale="long").verdict == "not tested"


def test_the_identity_bias_leaves_out_the_interval_from_initialisation():
    """Re-review (defect 2d): α at initialisation is about −12, and the first interval made smoke
    read +45 %. identity_bias leaves it out, and reports the bias relative to ηα too."""
    text = PATH.read_text()
    assert "ok[0] = False  # the interval from initialisation" in text
    assert '"identity_bias_alpha_seeds"' in text and '"fd_ratio"' in text


def test_the_verdict_text_branches_on_the_baseline_and_reads_the_decline_from_the_peak():
    """Re-review (defect 6): the decline was mentioned only past −1 % per 1,000 steps (the long
    traces fall 0.5–0.8 %), and "No seed is still rising, so … graded: not tested" could print
    when the γ = 0 gate failed. And (defect 1) the alignment prose is generated from the record."""
    text = PATH.read_text()
    assert "pl < 0.95 * pk" in text
    assert "if not baseline_ok:" in text
    assert "**The alignment row and the identity.**" in text
    assert "*is* \"the sharpness stops rising" not in text  # the old, asserted identity
    assert "5,311" not in text and "6,600 s" not in text  # no hand-typed timings in prose


def test_every_mlp_and_cnn_claim_carries_the_data_conventions(specs):
    """Review (long, D5): the chapter loaded the class-interleaved JPEG subset standardised per
    channel with its own statistics, silently. It loads cifar10-5k's conventions, and the JPEG
    copy's remaining difference is a departure beside every MLP and CNN claim at every scale."""
    assert "data.load_cifar10(n=P.n_train, **data.COHEN2021)" in PATH.read_text()
    assert "data.load_cifar10(n=P.cnn_n_train, **data.COHEN2021)" in PATH.read_text()
    for spec in specs.values():
        if spec.kind == "claim":
            jpeg = [d for d in spec.departures if "JPEG" in d.what]
            assert jpeg and jpeg[0].scales is None and jpeg[0].reason == "data availability", spec.id


def test_no_two_claims_need_one_metric_in_disjoint_ranges(specs):
    assert v.conflicting_claims(list(specs.values())) == []


def test_slows_sharpening_rejects_a_negligible_slowdown(rules):
    rule = rules["slows-sharpening"]
    good = {"sharpening_gamma0": 0.5, "sharpening_order_fraction": 1.0,
            "sharpening_rise_ratio": 0.3}
    assert rule.grade(good) == R
    # ordered, but the largest γ sharpens 99% as much as γ = 0: not a slowdown
    assert rule.grade({**good, "sharpening_rise_ratio": 0.99}) == N
    assert rule.grade({**good, "sharpening_gamma0": 0.01}) == T  # γ = 0 did not sharpen


def test_ntk_is_a_consistency_check_of_the_sharpness(specs):
    """Issue 31: under ½MSE λ_max(JJᵀ)/N is the Gauss–Newton top eigenvalue, S to 0.1% in the
    review (79.44 vs 79.44), and its spread was S's: as a claim it added nothing beyond the
    sharpness. It is a consistency check that the two measurements agree."""
    ntk = specs["ntk-tracks-sharpness"]
    assert ntk.kind == "consistency" and "ntk-stabilises" not in specs
    run = {"ntk_late_probes": 6, "ntk_sharpness_gap": 0.001, "ntk_spread_gamma": 0.047,
           "sharpness_spread_gamma": 0.047}
    assert v.grade(ntk, run, scale="book").verdict == "holds"
    assert v.grade(ntk, {**run, "ntk_sharpness_gap": 0.2}, scale="book").verdict == "fails"
    assert v.grade(ntk, {**run, "ntk_late_probes": 1}, scale="book").verdict == "not tested"


def test_the_alignment_crossing_must_persist_and_is_read_on_averaged_alpha():
    """Issue 31: α read at one iterate flips sign with the step's parity at the edge; the
    chapter averages α and c_y over steps t and t + 1 and needs the crossing held two probes."""
    text = PATH.read_text()
    assert 'probes.oscillation_averaged(probes.alignment("half_mse")' in text
    assert "h.extra.alignment.value.alpha" in text
    # the parity artefact: α/γ above c_y on even probes only — no crossing
    c_y = np.full(8, 1.0)
    parity = np.array([0.0, 3, 0.5, 3, 0.5, 3, 0.5, 3])
    assert edge_model.aligned_before_stop(c_y, parity, 6) is False


def test_intervention_is_tested_only_where_the_channel_was_removed(rules):
    rule = rules["alignment-intervention"]
    run = dict(INTERVENTION)
    assert rule.grade(run) == R
    assert rule.grade({**run, "intervention_plateau": 78.0}) == N  # the plateau survives
    # the projection left half of c_y: the channel was not removed, nothing was tested
    assert rule.grade({**run, "intervention_channel_residual": 0.5}) == T
    assert rule.grade({**run, "twin_sub_edge_ratio": 0.99}) == T  # no plateau to remove


def test_toy_is_a_consistency_check(specs):
    toy = specs["toy-threshold-and-damping"]
    assert toy.kind == "consistency"
    exact = {"toy_model_gap": 1e-14, "toy_shift_rel_err": 0.003,
             "toy_damping_rel_err_max": 0.03, "toy_stop_rel_err_max": 1e-10,
             "toy_shift": -0.1, "toy_gamma": 0.1, "toy_damping_measured": [2.9e-4],
             "toy_damping_predicted": [3e-4], "toy_stop": [180.0], "toy_stop_predicted": [180.0]}
    assert v.grade(toy, exact, scale="smoke").verdict == "holds"
    assert v.grade(toy, {**exact, "toy_shift_rel_err": 10.0}, scale="smoke").verdict == "fails"
    # the toy, the NTK identity, the alignment rows (MLP and CNN: they test our reconstructed
    # c_crit, final review) and the sharpening identity are consistency checks
    assert specs["cnn-no-alignment"].kind == "consistency"
    assert [s.kind for s in specs.values()].count("claim") == len(specs) - 5


def test_the_chapter_states_its_conventions_in_prose():
    text = PATH.read_text()
    assert "½MSE" in text and "(c\\eta, \\gamma/c)" in text  # the loss convention and γ's map
    assert "Euler" in text and "ReLU CNN" in text  # c_y ∝ S is homogeneity, CNNs included
