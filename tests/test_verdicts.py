"""Declared rules: every rule type graded on synthetic metrics, the text it renders, the mutation
helpers (a rule that no input can fail is a defect), grading into records, the generated Verdict
section, and each chapter's declared claims (the cell tagged ``claims``) checked for inputs that
fail them."""

import math
import re
from pathlib import Path

import numpy as np
import pytest

from eoslib.book import display, verdicts as v
from eoslib.book.results import Claim

NAN = float("nan")
R, P, N, T = "reproduced", "partly reproduced", "not reproduced", "not tested"
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


# ----------------------------------------------------------------------------- leaf rules


@pytest.mark.parametrize("value, verdict", [
    (0.05, R), (0.1, R), (0.15, P), (0.2, P), (0.21, N), (math.inf, N),
    (NAN, T), (None, T), (np.float32(0.05), R), (np.asarray(0.3), N),
])
def test_at_most(value, verdict):
    assert v.AtMost("err", 0.1, fair=0.2).grade({"err": value}) == verdict


def test_absent_metric_is_not_tested_and_a_list_is_an_error():
    rule = v.AtLeast("rate", 0.5)
    assert rule.grade({}) == T
    with pytest.raises(TypeError, match="metric 'rate'=\\[1, 2\\] is not a number"):
        rule.grade({"rate": [1, 2]})


@pytest.mark.parametrize("value, verdict", [(2, R), (1, R), (0.7, P), (0.4, N), (-math.inf, N), (NAN, T)])
def test_at_least(value, verdict):
    assert v.AtLeast("x", 1, fair=0.5).grade({"x": value}) == verdict


def test_pass_fail_threshold_has_no_partly():
    rule = v.AtMost("x", 1.0)
    assert [rule.grade({"x": x}) for x in (1.0, 1.0001)] == [R, N]


@pytest.mark.parametrize("make, fragment", [
    (lambda: v.AtMost("x", NAN), "good=nan must be a finite number"),
    (lambda: v.AtMost("x", 1, fair=0.5), "fair=0.5 must be ≥ good=1"),
    (lambda: v.AtLeast("x", 1, fair=2), "fair=2 must be ≤ good=1"),
    (lambda: v.AtMost("", 1), "metric='' must be a metric name"),
    (lambda: v.Within("x", 1, -0.1), "good=-0.1 must be ≥ 0"),
    (lambda: v.Within("x", 0, 0.1), "target=0 has no relative error"),
    (lambda: v.Factor("x", 1, 0.5), "good=0.5 must be ≥ 1"),
    (lambda: v.BeatsNull("e", "n", 1), "good=1 must be > 1"),
    (lambda: v.BeatsNull("e", "n", 3, fair=4), "fair=4 must be in \\[1, good=3\\]"),
    (lambda: v.Exceeds("e", "c", 0.5), "good=0.5 must be > 1"),
    (lambda: v.AllOf(()), "non-empty tuple of rules"),
    (lambda: v.AnyOf(("x",)), "non-empty tuple of rules"),
])
def test_bad_rules_name_the_parameter(make, fragment):
    with pytest.raises(ValueError, match=fragment):
        make()


def test_within_relative_error_against_a_number_or_a_metric():
    rule = v.Within("plateau", "edge", 0.1, fair=0.25)
    assert rule.grade({"plateau": 108, "edge": 100}) == R
    assert rule.grade({"plateau": 80, "edge": 100}) == P
    assert rule.grade({"plateau": 150, "edge": 100}) == N
    assert rule.grade({"plateau": 150}) == T
    assert v.Within("r", 1.0, 0.1).grade({"r": 0.95}) == R
    assert rule.describe({"plateau": "plateau S", "edge": "2/η"}) == "plateau S within 10% of 2/η (25%: partly)"


def test_factor_is_symmetric_and_rejects_sign_mismatch():
    rule = v.Factor("pred", "meas", 2, fair=4)
    assert rule.grade({"pred": 3, "meas": 2}) == R
    assert rule.grade({"pred": 1, "meas": 2}) == R  # a factor 2 below
    assert rule.grade({"pred": 0.6, "meas": 2}) == P
    assert rule.grade({"pred": -2, "meas": 2}) == N
    assert rule.grade({"pred": 0, "meas": 2}) == N
    assert rule.grade({"pred": NAN, "meas": 2}) == T


def test_beats_null():
    rule = v.BeatsNull("err", "null_err", 3, fair=1.5)
    assert rule.grade({"err": 0.1, "null_err": 0.5}) == R
    assert rule.grade({"err": 0.1, "null_err": 0.2}) == P
    assert rule.grade({"err": 0.1, "null_err": 0.1}) == N
    assert rule.grade({"err": 0.0, "null_err": 0.1}) == R
    assert rule.grade({"err": 0.0, "null_err": 0.0}) == N  # equally perfect does not beat the null
    assert rule.grade({"err": 0.1}) == T
    with pytest.raises(ValueError, match="errors and rates must be ≥ 0"):
        rule.grade({"err": -0.1, "null_err": 0.1})
    assert rule.describe() == "err smaller than null_err by a factor ≥ 3 (≥ 1.5: partly)"


def test_exceeds_control():
    rule = v.Exceeds("rate_edge", "rate_stable", 5, fair=2)
    assert rule.grade({"rate_edge": 0.3, "rate_stable": 0.0}) == R
    assert rule.grade({"rate_edge": 0.3, "rate_stable": 0.1}) == P
    assert rule.grade({"rate_edge": 0.1, "rate_stable": 0.1}) == N
    assert rule.grade({"rate_edge": 0.0, "rate_stable": 0.0}) == N
    assert rule.grade({"rate_edge": NAN, "rate_stable": 0.0}) == T


# ----------------------------------------------------------------------------- composites


def test_all_of_is_the_worst_part_and_not_tested_only_without_a_failure():
    rule = v.AllOf((v.AtMost("a", 1, fair=2), v.AtLeast("b", 1)))
    assert rule.grade({"a": 0, "b": 2}) == R
    assert rule.grade({"a": 1.5, "b": 2}) == P
    assert rule.grade({"a": 0, "b": 0}) == N
    assert rule.grade({"a": 5}) == N  # a failure decides even with b not measured
    assert rule.grade({"a": 0}) == T


def test_any_of_is_the_best_tested_part():
    rule = v.AnyOf((v.AtMost("a", 1), v.AtLeast("b", 1)))
    assert rule.grade({"a": 5, "b": 2}) == R
    assert rule.grade({"a": 5, "b": 0}) == N
    assert rule.grade({"a": 5}) == N
    assert rule.grade({}) == T


def test_given_is_not_tested_outside_the_regime():
    rule = v.Given(v.AtLeast("n_at_edge", 3), v.AtMost("err", 0.1))
    assert rule.grade({"n_at_edge": 2, "err": 0.0}) == T
    assert rule.grade({"n_at_edge": 3, "err": 0.5}) == N
    assert rule.grade({"n_at_edge": 3, "err": 0.05}) == R
    assert rule.describe() == "err ≤ 0.1; tested when n_at_edge ≥ 3"
    assert rule.explain({"n_at_edge": 1}) == (
        "not tested: n_at_edge = 1, and the rule applies only when n_at_edge ≥ 3")


def test_rule_text_renders_thresholds_and_composition():
    rule = v.AllOf((v.Within("r", 1.0, 0.1), v.AtMost("drift", 0.1, fmt=".0%"),
                    v.AnyOf((v.AtLeast("a", 1), v.AtLeast("b", 2)))))
    assert rule.describe({"drift": "drift/(2/η)"}) == (
        "r within 10% of 1 and drift/(2/η) ≤ 10% and (a ≥ 1 or b ≥ 2)")
    assert rule.explain({"r": 1.05, "drift": 0.2, "a": 0}, {"drift": "drift/(2/η)"}) == (
        "r = 1.05, 5.0% off 1 ✓; drift/(2/η) = 20% ✗; a = 0 ✗; b = not measured")
    assert rule.metrics() == ("r", "drift", "a", "b")


# ----------------------------------------------------------------------------- mutation


EVERY_RULE_TYPE = [
    v.AtMost("x", 0.1, fair=0.2), v.AtLeast("x", 3), v.Within("x", "t", 0.1, fair=0.3),
    v.Within("x", 2.0, 0.05), v.Factor("x", "t", 2), v.BeatsNull("e", "n", 3, fair=1.5),
    v.Exceeds("e", "c", 5, fair=2),
    v.AllOf((v.AtMost("x", 1), v.AtLeast("x", 0.5))),
    v.AnyOf((v.AtMost("x", 1), v.AtLeast("y", 2))),
    v.Given(v.AtLeast("n", 3), v.AllOf((v.AtMost("e", 0.1), v.BeatsNull("e", "n0", 3)))),
    # shared metrics across parts with thresholds that no single witness satisfies together
    v.AllOf((v.Exceeds("r", "r0", 5, fair=2), v.AtLeast("r", 0.05), v.AtMost("q", 0.9, fair=1))),
]


@pytest.mark.parametrize("rule", EVERY_RULE_TYPE, ids=lambda r: type(r).__name__)
def test_every_rule_type_has_a_failing_and_a_passing_input(rule):
    bad, good = v.failing_input(rule), v.passing_input(rule)
    assert bad is not None and rule.grade(bad) in (N, P), bad
    assert good is not None and rule.grade(good) == R, good


def test_a_rule_no_input_can_fail_is_reported():
    tautology = v.AnyOf((v.AtMost("x", 1), v.AtLeast("x", 0)))  # every x passes
    assert v.failing_input(tautology) is None
    specs = [v.ClaimSpec("ok", "c", "p", v.AtMost("x", 1)),
             v.ClaimSpec("empty", "c", "p", tautology)]
    with pytest.raises(AssertionError, match="'empty': no input fails its rule"):
        v.assert_claims_can_fail(specs)
    assert v.assert_claims_can_fail(specs[:1])["ok"] == {"x": 2.0}


def test_a_rule_that_is_at_worst_partly_is_reported():
    # shallow-relu's old edge-one-by-one rule: once tested, its Partly branch always held
    at_worst_partly = v.Given(v.AtLeast("n", 1), v.AnyOf((
        v.AllOf((v.AtLeast("n", 2), v.AtLeast("cv", 0.1))), v.Partly(v.AtLeast("n", 1)))))
    assert v.failing_input(at_worst_partly) is not None  # partly counts as failing ...
    assert v.refuting_input(at_worst_partly) is None  # ... but nothing gives not reproduced
    with pytest.raises(AssertionError, match="'weak': no input gives not reproduced"):
        v.assert_claims_can_fail([v.ClaimSpec("weak", "c", "p", at_worst_partly)])
    refutable = v.Given(v.AtLeast("n", 2), v.AtLeast("cv", 0.1))
    refuting = v.refuting_input(refutable)
    assert refuting is not None and refutable.grade(refuting) == N


def test_a_rule_no_input_can_pass_is_reported():
    impossible = v.AllOf((v.AtMost("x", 0), v.AtLeast("x", 1)))
    with pytest.raises(AssertionError, match="no input passes its rule"):
        v.assert_claims_can_fail([v.ClaimSpec("never", "c", "p", impossible)])


# ----------------------------------------------------------------------------- claims


def spec(**kw):
    fields = dict(id="edge", claim="S hovers at 2/η", paper="≈ 2/η (Fig. 1)",
                  rule=v.Given(v.AtLeast("n", 1), v.AtMost("err", 0.1, fair=0.25, fmt=".0%")),
                  ours="plateau/(2/η) = {ratio:.2f}; n = {n}", names={"err": "|plateau/(2/η) − 1|"})
    fields.update(kw)
    return v.ClaimSpec(**fields)


def test_grade_fills_the_record_fields_from_the_declaration():
    claim = v.grade(spec(control="a fixed level"), {"n": 2, "err": 0.3, "ratio": [1.3, np.nan]},
                    scale="book")
    assert isinstance(claim, Claim)
    assert claim.verdict == N
    assert claim.ours == "plateau/(2/η) = 1.30, n/a; n = 2"
    assert claim.rule == "|plateau/(2/η) − 1| ≤ 10% (≤ 25%: partly); tested when n ≥ 1"
    assert claim.note == "|plateau/(2/η) − 1| = 30% ✗"
    assert (claim.control, claim.evidence, claim.kind) == ("a fixed level", "book run", "claim")
    stored = v.grade(spec(evidence="stored"), {"n": 0, "ratio": None}, scale="book")  # n = 0: not entered
    assert (stored.verdict, stored.evidence, stored.ours) == (T, "stored paper-scale run", "plateau/(2/η) = n/a; n = 0")


def test_consistency_checks_hold_or_fail_never_reproduce():
    check = spec(kind="consistency", rule=v.AtMost("err", 1e-3), ours="{err:.1e}", names={})
    assert v.grade(check, {"err": 1e-6}, scale="smoke").verdict == "holds"
    assert v.grade(check, {"err": 1.0}, scale="smoke").verdict == "fails"
    assert v.grade(check, {"err": None}, scale="smoke").verdict == "not tested"


@pytest.mark.parametrize("kw, fragment", [
    (dict(evidence="gpu"), "evidence='gpu' is not one of"),
    (dict(kind="paper"), "kind='paper' is not one of"),
    (dict(rule="err < 0.1"), "is not a Rule"),
    (dict(names={"typo": "x"}), "names \\['typo'\\] are not metrics of its rule"),
])
def test_bad_declarations_name_the_field(kw, fragment):
    with pytest.raises(ValueError, match=fragment):
        spec(**kw)


def test_a_glossary_gives_the_names_the_rule_reads():
    glossary = {"err": "the error", "n": "runs", "other": "a metric of another claim"}
    declared = spec(names={}, glossary=glossary)
    assert dict(declared.names) == {"n": "runs", "err": "the error"}
    assert declared == spec(names={"n": "runs", "err": "the error"})
    with pytest.raises(ValueError, match="names or glossary, not both"):
        spec(glossary=glossary)


def test_grade_all_rejects_duplicates_and_missing_template_metrics():
    with pytest.raises(ValueError, match="declared more than once"):
        v.grade_all([spec(), spec()], {"n": 1, "err": 0, "ratio": 1}, scale="smoke")
    with pytest.raises(ValueError, match="names metric 'ratio'"):
        v.grade(spec(), {"n": 1, "err": 0}, scale="smoke")


# ----------------------------------------------------------------------------- rendering


def graded_examples():
    metrics = {"n": 1, "err": 0.05, "ratio": 1.05}
    return [
        v.grade(spec(), metrics, scale="book"),
        v.grade(spec(id="edge-2", rule=v.AtMost("err", 0.01), names={}), metrics, scale="book"),
        v.grade(spec(id="stored", evidence="stored"), {"n": None, "ratio": None}, scale="book"),
        v.grade(spec(id="identity", kind="consistency", rule=v.AtMost("err", 0.1), names={}),
                metrics, scale="book"),
    ]


def test_verdict_markdown_is_generated_from_the_graded_claims():
    text = v.verdict_markdown(graded_examples(), scale="book")
    assert text.startswith("At `book` scale, 3 paper claims were judged by rules declared before "
                           "the run: 1 reproduced, 0 partly reproduced, 1 not reproduced, 1 not tested.")
    assert "- **edge** — *reproduced* (book run): S hovers at 2/η. Rule: |plateau/(2/η) − 1| ≤ 10%" in text
    assert "- **stored** — *not tested* (stored paper-scale run):" in text
    checks = text.index("Consistency checks")
    assert text.index("**identity**") > checks and text.index("**edge-2**") < checks
    assert "1 holds" in text


def test_claims_table_puts_checks_apart_and_reads_hand_written_claims():
    table = display.claims_table_markdown(
        graded_examples() + [Claim("old", "x|y", "1", "2", "reproduced", "by hand")])
    rows = table.splitlines()
    assert rows[0] == "| claim | paper | ours | verdict | evidence | rule and why |"
    assert any(r.startswith("| **old**: x\\|y |") and "| — | by hand |" in r for r in rows)
    assert table.index("**identity**") > table.index("Consistency checks")
    declared = display.declared_claims_markdown([spec(), spec(id="s", evidence="stored")])
    assert "| stored paper-scale run | paper claim |" in declared


# ----------------------------------------------------------------------------- chapters


def claims_cell(path: Path) -> str | None:
    """The source of a notebook's cell tagged ``claims`` (jupytext percent format), if any."""
    cells = re.split(r"^# %%", path.read_text(), flags=re.M)
    tagged = [c for c in cells if re.match(r'[^\n]*tags=\[[^\]]*"claims"', c)]
    assert len(tagged) <= 1, f"{path.name}: more than one cell tagged 'claims'"
    return tagged[0].split("\n", 1)[1] if tagged else None


DECLARING = sorted(p for p in NOTEBOOKS.glob("*.py") if claims_cell(p) is not None)


def test_eos_intro_declares_its_claims():
    assert NOTEBOOKS / "eos-intro.py" in DECLARING


@pytest.mark.parametrize("path", DECLARING, ids=lambda p: p.stem)
def test_every_declared_chapter_claim_can_fail(path):
    """The mutation test of each converted chapter: every claim it declares has an input that
    fails its rule (and one that passes it). The claims cell runs on its own, before the run."""
    namespace: dict = {}
    exec(compile(claims_cell(path), str(path), "exec"), namespace)
    specs = namespace["CLAIMS"]
    assert specs and all(isinstance(s, v.ClaimSpec) for s in specs)
    failing = v.assert_claims_can_fail(specs)
    for s in specs:  # and the failing input really flips the graded verdict
        assert s.rule.grade(failing[s.id]) in (N, P)


def test_eos_intro_rules_catch_the_reviewed_defects():
    """Issue 16's findings on eos-intro, as inputs its declared rules must not pass."""
    namespace: dict = {}
    exec(compile(claims_cell(NOTEBOOKS / "eos-intro.py"), "eos-intro", "exec"), namespace)
    rules = {s.id: s.rule for s in namespace["CLAIMS"]}
    # the fidelity review: S₀ near 2/η is a precondition (set by η and the init), not the
    # claim: with no step size starting at ≤ 80 % of 2/η the claim is not tested, whatever rose
    sharp = rules["progressive-sharpening"]
    rose = {"n_room_to_climb": 2, "sharpening_rank_corr_min": 0.97,
            "sharpening_rise_fraction_min": 0.9, "edge_reached_fraction": 1.0}
    assert sharp.grade(rose) == R
    assert sharp.grade({**rose, "n_room_to_climb": 0}) == T
    assert sharp.grade({**rose, "n_room_to_climb": 0, "sharpening_rank_corr_min": -1.0}) == T
    # the claim is the rise: a flat or falling S, or a jump at the last probe, fails it even
    # when 2/η was reached (the smallest over the graded step sizes decides, issue 32)
    assert sharp.grade({**rose, "sharpening_rank_corr_min": 0.1}) == N
    assert sharp.grade({**rose, "sharpening_rank_corr_min": -0.9}) == N
    assert sharp.grade({**rose, "sharpening_rise_fraction_min": 0.0}) == N
    # rising but stopped at 99 % before 2/η: partly (one of two), or not at all (none)
    assert sharp.grade({**rose, "edge_reached_fraction": 0.5}) == P
    assert sharp.grade({**rose, "edge_reached_fraction": 0.0,
                        "sharpening_rise_fraction_min": math.nan}) == N
    # S sitting at a fixed level whatever η: the fixed-level null fits perfectly and wins
    plateaus, edges = np.array([100.0, 101, 99]), np.array([100.0, 133.3, 166.7])
    fixed = {"n_plateaus": 3, "n_reached_edge": 3, "eos_tracking_spread": float(np.std(np.log(plateaus / edges))),
             "eos_constant_spread": float(np.std(np.log(plateaus)))}
    assert rules["tracks-2/eta"].grade(fixed) == N
    tracking = {"n_plateaus": 3, "n_reached_edge": 3, "eos_tracking_spread": float(np.std(np.log(1.08 * edges / edges))),
                "eos_constant_spread": float(np.std(np.log(1.08 * edges)))}
    assert rules["tracks-2/eta"].grade(tracking) == R
    # fewer than 3 step sizes reached 2/η before their 99 % stop (the book scale's small η):
    # not tested, whatever the spreads
    assert rules["tracks-2/eta"].grade({**tracking, "n_reached_edge": 2}) == T
    assert rules["tracks-2/eta"].grade({**fixed, "n_reached_edge": 2}) == T
    # a plateau read from probes whose eigensolve missed eig_tol is flagged
    conv = rules["plateau-probes-converged"]
    assert conv.grade({"n_plateaus": 2, "plateau_probes_not_converged": 0}) == R
    assert conv.grade({"n_plateaus": 2, "plateau_probes_not_converged": 1}) == N
    assert conv.grade({"n_plateaus": 0, "plateau_probes_not_converged": 0}) == T
    # one rising step in a thousand at the edge is not a non-monotone loss
    rare = {"n_at_edge": 3, "loss_increase_fraction": 0.001, "loss_increase_fraction_stable": 0.0,
            "edge_loss_ratio_max": 0.5}
    assert rules["non-monotone-loss"].grade(rare) == N
    # the edge never reached: the edge claims are not tested, never passed or failed
    for claim in ("edge-of-stability", "tracks-2/eta", "non-monotone-loss"):
        assert rules[claim].grade({"n_at_edge": 0, "n_plateaus": 0, "n_reached_edge": 0}) == T
    # a run that diverged at the edge fails the edge claim (its plateau error is infinite)
    assert rules["edge-of-stability"].grade(
        {"n_at_edge": 1, "eos_ratio_err_max": math.inf, "eos_drift_fraction": math.inf}) == N


def test_dln_rpe_rules_catch_the_reviewed_defects():
    """Issue 16's and the 2nd review's findings on dln-rpe: a regime never entered is not tested
    (never 'partly'); outside the paper's regime (ξ not ≈ 0, or z not quadratic) every claim is
    not tested, whatever it measured; monotonicity grades when the away-rotation ends, not the
    first step's direction (RPE's) nor a return below 2/η that every bounded run makes; the
    boundary's position is a consistency check (one hypothesis with RPE), failing 20 % off."""
    namespace: dict = {}
    exec(compile(claims_cell(NOTEBOOKS / "dln-rpe.py"), "dln-rpe", "exec"), namespace)
    specs = {s.id: s for s in namespace["CLAIMS"]}
    rules = {k: s.rule for k, s in specs.items()}
    assert set(specs) == {"RPE", "monotone-until-stable", "threshold", "closed-forms",
                          "gamma-beta-exact"}
    assert [s.id for s in specs.values() if s.kind == "claim"] == ["RPE", "monotone-until-stable"]
    regime = {"xi": 1e-4, "quadratic_z": 1.0}
    only_stable = {**regime, "n_stable": 2, "n_unstable": 0, "n_unstable_away": 0,
                   "stable_toward_fraction": 1.0, "unstable_away_fraction": NAN,
                   "stable_monotone_fraction": 1.0, "unstable_turn_at_resolution_fraction": NAN}
    assert rules["RPE"].grade(only_stable) == T
    assert rules["monotone-until-stable"].grade(only_stable) == T
    # a stable η that rotates the wrong way fails, even with no unstable η to compare
    assert rules["RPE"].grade({**only_stable, "stable_toward_fraction": 0.5}) == N
    both = {**only_stable, "n_unstable": 2, "n_unstable_away": 2, "unstable_away_fraction": 1.0,
            "unstable_turn_at_resolution_fraction": 1.0}
    assert rules["RPE"].grade(both) == R and rules["monotone-until-stable"].grade(both) == R
    # an away-rotation that does not end where the instability resolves fails monotonicity
    late = {**both, "unstable_turn_at_resolution_fraction": 0.5}
    assert rules["monotone-until-stable"].grade(late) == N and rules["RPE"].grade(late) == R
    # unstable η that turn toward fail RPE; monotonicity does not grade their direction again
    toward = {**both, "n_unstable_away": 0, "unstable_away_fraction": 0.0,
              "unstable_turn_at_resolution_fraction": NAN}
    assert rules["RPE"].grade(toward) == N and rules["monotone-until-stable"].grade(toward) == T
    # outside the paper's regime nothing is graded, whatever was measured
    for outside in ({"xi": 0.2}, {"quadratic_z": 0.0}):
        for claim in ("RPE", "monotone-until-stable"):
            assert rules[claim].grade({**late, **outside}) == T
            assert rules[claim].grade({**both, **outside}) == T
        assert rules["threshold"].grade({**regime, **outside,
                                         "boundary_gap_2_over_lambda_max": 0.2}) == T
    assert rules["threshold"].grade({**regime, "boundary_gap_2_over_lambda_max": 3e-4}) == R
    assert rules["threshold"].grade({**regime, "boundary_gap_2_over_lambda_max": 0.2}) == N
    assert rules["threshold"].grade({**regime, "boundary_gap_2_over_lambda_max": math.inf}) == N
    assert specs["threshold"].kind == "consistency"
    exact = {"hessian_max_rel_err": 0.0, "eigenvector_angle_max_err": 0.0}
    assert rules["closed-forms"].grade(exact) == R
    assert rules["closed-forms"].grade({**exact, "eigenvector_angle_max_err": 0.1}) == N
    gamma = {"quadratic_z": 1.0, "gamma_beta_max_rel_err": 1e-15, "boundary_crossing_err_spacings": 0.1}
    assert rules["gamma-beta-exact"].grade(gamma) == R
    assert rules["gamma-beta-exact"].grade({**gamma, "gamma_beta_max_rel_err": 0.1}) == N
    assert rules["gamma-beta-exact"].grade({**gamma, "boundary_crossing_err_spacings": 5}) == N
    # γβ is an approximation for other z: not graded there (no ✗ shown against z = Θ²)
    assert rules["gamma-beta-exact"].grade({**gamma, "quadratic_z": 0.0,
                                            "gamma_beta_max_rel_err": 0.1}) == T
    assert all(specs[k].kind == "consistency" for k in ("closed-forms", "gamma-beta-exact"))