"""Departures from the paper's setup (issue 34, part 3): declared with each claim
(:class:`eoslib.book.verdicts.Departure`), kept in the record by ``grade``, shown beside every
verdict that is not ``reproduced``."""

from __future__ import annotations

import json

import pytest

from eoslib.book import results
from eoslib.book import verdicts as v
from eoslib.book.results import Claim
from eoslib.book.verdicts import ClaimSpec, Departure

CPU = Departure("{n_images} CIFAR-10 images instead of 5,000", "CPU", scales=("smoke", "book"))
LOSS = Departure("cross-entropy replaced by ½MSE", "design choice")


def spec(**kw):
    fields = dict(id="edge", claim="S hovers at 2/η", paper="≈ 2/η (Fig. 1)",
                  rule=v.AtMost("err", 0.1, fair=0.25), ours="{err:.2f}",
                  departures=(CPU, LOSS))
    fields.update(kw)
    return ClaimSpec(**fields)


# ----------------------------------------------------------------------------- declaration


def test_reasons_are_the_four_declared_ones():
    assert v.DEPARTURE_REASONS == ("CPU", "not stated in the paper", "reconstructed formula",
                                   "design choice")
    assert v.DEPARTURE_REASONS is results.DEPARTURE_REASONS


@pytest.mark.parametrize("kw, fragment", [
    (dict(what="", reason="CPU"), "what='' must be a non-empty string"),
    (dict(what=3, reason="CPU"), "what=3 must be a non-empty string"),
    (dict(what="x", reason="cpu"), r"reason='cpu' is not one of \['CPU', 'not stated in the paper'"),
    (dict(what="x", reason="CPU", scales="smoke"), "scales='smoke' must be None .* a non-empty tuple"),
    (dict(what="x", reason="CPU", scales=()), r"scales=\(\) must be None"),
    (dict(what="x", reason="CPU", scales=("smoke", "huge")), r"names \['huge'\], not among the scales"),
    (dict(what="{n images", reason="CPU"), "is not a format template"),
    (dict(what="{} images", reason="CPU"), "positional field"),
    (dict(what="{0} images", reason="CPU"), "positional field"),
])
def test_bad_departures_name_the_parameter_value_and_what_is_allowed(kw, fragment):
    with pytest.raises(ValueError, match=fragment):
        Departure(**kw)


def test_a_departure_is_frozen_data_and_its_scales_a_tuple():
    d = Departure("x", "CPU", scales=["smoke", "book"])
    assert d.scales == ("smoke", "book") and d == Departure("x", "CPU", ("smoke", "book"))
    assert hash(d) == hash(Departure("x", "CPU", ("smoke", "book")))
    with pytest.raises(AttributeError):
        d.reason = "design choice"
    assert Departure("a literal {{brace}}", "design choice").format({}) == "a literal {brace}"


def test_scale_filtering():
    assert CPU.applies("smoke") and CPU.applies("book") and not CPU.applies("paper")
    assert all(LOSS.applies(s) for s in results.SCALES)


@pytest.mark.parametrize("kw, fragment", [
    (dict(departures=LOSS), "must be a tuple of Departure"),
    (dict(departures=("fewer images",)), "holds 'fewer images', not a Departure"),
    (dict(follows_paper="yes", departures=()), "follows_paper='yes' must be True or False"),
    (dict(follows_paper=True), "follows_paper=True but departures are listed"),
])
def test_bad_claim_declarations_name_the_field(kw, fragment):
    with pytest.raises(ValueError, match=fragment):
        spec(**kw)


def test_a_claim_may_declare_neither_and_a_list_becomes_a_tuple():
    assert spec(departures=()).departures == () and not spec(departures=()).follows_paper
    assert spec(departures=[LOSS]).departures == (LOSS,)
    assert spec(departures=(), follows_paper=True).follows_paper


# ----------------------------------------------------------------------------- grading


def test_grade_keeps_the_departures_of_the_scale_formatted_with_the_metrics():
    metrics = {"err": 0.5, "n_images": 250}
    book = v.grade(spec(), metrics, scale="book")
    assert book.departures == ({"what": "250 CIFAR-10 images instead of 5,000", "reason": "CPU"},
                               {"what": "cross-entropy replaced by ½MSE", "reason": "design choice"})
    assert not book.follows_paper
    paper = v.grade(spec(), metrics, scale="paper")
    assert paper.departures == ({"what": "cross-entropy replaced by ½MSE", "reason": "design choice"},)
    # evidence from a stored paper-scale run: the paper-scale departures, whatever this run's scale
    stored = v.grade(spec(evidence="stored"), metrics, scale="smoke")
    assert stored.departures == paper.departures


def test_follows_paper_is_declared_or_implied_by_departures_of_other_scales_only():
    metrics = {"err": 0.5, "n_images": 250}
    assert v.grade(spec(departures=(), follows_paper=True), metrics, scale="book").follows_paper
    only_cpu = spec(departures=(CPU,))
    assert not v.grade(only_cpu, metrics, scale="book").follows_paper
    at_paper = v.grade(only_cpu, metrics, scale="paper")
    assert at_paper.follows_paper and at_paper.departures == ()
    nothing = v.grade(spec(departures=()), metrics, scale="paper")
    assert (nothing.departures, nothing.follows_paper) == ((), False)


def test_a_departure_naming_an_absent_metric_is_an_error():
    with pytest.raises(ValueError, match="claim 'edge': Departure .* names metric 'n_images'"):
        v.grade(spec(), {"err": 0.5}, scale="book")
    # the template is read only where the departure applies
    assert v.grade(spec(), {"err": 0.5}, scale="paper").verdict == "not reproduced"


def test_nan_and_lists_format_like_ours():
    d = Departure("{widths} wide; {lr:.2f}", "CPU")
    assert d.format({"widths": [1, 2], "lr": float("nan")}) == "1, 2 wide; n/a"


# ----------------------------------------------------------------------------- record


def a_record(claims):
    return results.make_record("demo", "book", {}, claims, {"err": 0.5},
                               {"eoslib_version": "0", "git_hash": "x", "jax_version": "0",
                                "device": "cpu"})


def test_record_round_trip(tmp_path):
    claims = [v.grade(spec(), {"err": 0.5, "n_images": 250}, scale="book"),
              v.grade(spec(id="same", departures=(), follows_paper=True), {"err": 0.01},
                      scale="book")]
    path = results.write_record(a_record(claims), tmp_path)
    raw = json.loads(path.read_text())["claims"]
    assert raw[0]["departures"] == [{"what": "250 CIFAR-10 images instead of 5,000", "reason": "CPU"},
                                    {"what": "cross-entropy replaced by ½MSE",
                                     "reason": "design choice"}]
    assert raw[0]["follows_paper"] is False and raw[1] == {**raw[1], "departures": [],
                                                          "follows_paper": True}
    back = [results.claim_from_dict(c) for c in results.read_record(path)["claims"]]
    assert back == claims


def test_a_record_without_departures_still_loads_and_says_nothing_was_declared(tmp_path):
    record = a_record([Claim("c", "x", "1", "2", "not reproduced")])
    for claim in record["claims"]:
        del claim["departures"], claim["follows_paper"]
    results.validate_record(record)
    back = results.claim_from_dict(record["claims"][0])
    assert (back.departures, back.follows_paper) == ((), False)
    assert v.departure_line(back) == "departures from the paper's setup not declared"


@pytest.mark.parametrize("departures, follows, fragment", [
    ("fewer images", False, "must be a list"),
    ([{"what": "x"}], False, r"departures\[0\]=.* must have exactly the keys \['what', 'reason'\]"),
    ([{"what": "", "reason": "CPU"}], False, r"departures\[0\] what='' must be a non-empty"),
    ([{"what": "x", "reason": "GPU"}], False, r"departures\[0\] reason='GPU' is not one of"),
    ([], "yes", "follows_paper='yes' is not true or false"),
    ([{"what": "x", "reason": "CPU"}], True, "follows_paper is true but it lists departures"),
])
def test_validate_record_names_a_broken_departure(departures, follows, fragment):
    record = a_record([Claim("c", "x", "1", "2", "not reproduced")])
    record["claims"][0].update(departures=departures, follows_paper=follows)
    with pytest.raises(ValueError, match=fragment):
        results.validate_record(record)


def test_claim_checks_its_departures():
    with pytest.raises(ValueError, match="reason='GPU'"):
        Claim("c", "x", "1", "2", "reproduced", departures=[{"what": "x", "reason": "GPU"}])
    with pytest.raises(ValueError, match="follows_paper=True with departures"):
        Claim("c", "x", "1", "2", "reproduced", departures=[{"what": "x", "reason": "CPU"}],
              follows_paper=True)
