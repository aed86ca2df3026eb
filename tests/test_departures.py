"""Departures from the paper's setup (issue 34, part 3): declared with each claim
(:class:`eoslib.book.verdicts.Departure`), kept in the record by ``grade``, shown beside every
verdict that is not ``reproduced``; and every chapter's paper claims declare them.

Every chapter that declares its claims (:data:`CHAPTERS`) is held to it: each of its paper claims
lists a departure or says ``follows_paper=True``
(:func:`test_every_paper_claim_declares_its_departures`); a new chapter is held from its first commit.
"""

from __future__ import annotations

import json

import pytest

from eoslib.book import results
from eoslib.book import verdicts as v
from eoslib.book.results import Claim
from eoslib.book.verdicts import ClaimSpec, Departure
from test_verdicts import NOTEBOOKS, claims_cell

#: Every chapter that declares its claims in a ``claims`` cell.
CHAPTERS = sorted(p.stem for p in NOTEBOOKS.glob("*.py") if claims_cell(p) is not None)

CPU = Departure("{n_images} CIFAR-10 images instead of 5,000", "CPU", scales=("smoke", "book"))
LOSS = Departure("cross-entropy replaced by ½MSE", "design choice")


def spec(**kw):
    fields = dict(id="edge", claim="S hovers at 2/η", paper="≈ 2/η (Fig. 1)",
                  rule=v.AtMost("err", 0.1, fair=0.25), ours="{err:.2f}",
                  departures=(CPU, LOSS))
    fields.update(kw)
    return ClaimSpec(**fields)


# ----------------------------------------------------------------------------- declaration


def test_reasons_are_the_five_declared_ones():
    assert v.DEPARTURE_REASONS == ("CPU", "not stated in the paper", "reconstructed formula",
                                   "design choice", "data availability")
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
    (dict(what="x", reason="CPU", always=1), "always=1 must be True or False"),
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


def test_a_departure_declared_always_is_shown_beside_a_reproduced_verdict_too():
    """``always=True``: the departure a reader needs beside every verdict (a model the paper never
    trained) is kept in the record with ``"always": true`` and shown beside ``reproduced`` too,
    alone; beside any other verdict every departure is shown as before. The key survives the
    record's JSON round trip, and a record without it reads as before."""
    other = Departure("a small MLP of our own, not the paper's network", "design choice", always=True)
    fine = v.grade(spec(id="fine", departures=(CPU, other)), {"err": 0.01, "n_images": 250}, scale="book")
    assert fine.verdict == "reproduced"
    assert fine.departures[1] == {"what": "a small MLP of our own, not the paper's network",
                                  "reason": "design choice", "always": True}
    assert "always" not in fine.departures[0]
    line = "differs from the paper in: a small MLP of our own, not the paper's network — design choice"
    assert v.departure_line(fine) == line
    bad = v.grade(spec(departures=(CPU, other)), {"err": 0.5, "n_images": 250}, scale="book")
    assert v.departure_line(bad) == ("differs from the paper in: 250 CIFAR-10 images instead of 5,000 — "
                                     "CPU; a small MLP of our own, not the paper's network — design choice")
    entry = json.loads(json.dumps(a_record([fine])))["claims"][0]
    results.validate_record(json.loads(json.dumps(a_record([fine]))))
    assert v.departure_line(entry) == line
    with pytest.raises(ValueError, match="always='yes' must be true or false"):
        Claim("c", "x", "1", "2", "reproduced",
              departures=[{"what": "x", "reason": "CPU", "always": "yes"}])
    with pytest.raises(ValueError, match="must have exactly the keys"):
        Claim("c", "x", "1", "2", "reproduced", departures=[{"what": "x", "reason": "CPU", "shown": 1}])


# ----------------------------------------------------------------------------- display


def shown():
    """One claim of every kind of line: departures, follows the paper, nothing declared,
    reproduced (no line), and consistency checks."""
    metrics = {"err": 0.5, "n_images": 250}
    return [
        v.grade(spec(), metrics, scale="book"),                                   # not reproduced
        v.grade(spec(id="same", departures=(), follows_paper=True), {"err": 0.2}, scale="book"),
        Claim("old", "x", "1", "2", "not tested"),                                 # nothing declared
        v.grade(spec(id="fine"), {"err": 0.01, "n_images": 250}, scale="book"),   # reproduced
        v.grade(spec(id="identity", kind="consistency", departures=()), {"err": 0.5}, scale="book"),
        v.grade(spec(id="check-cpu", kind="consistency", departures=(CPU,)), metrics, scale="book"),
    ]


def test_departure_line_beside_every_verdict_that_is_not_reproduced():
    lines = {c.id: v.departure_line(c) for c in shown()}
    assert lines == {
        "edge": "differs from the paper in: 250 CIFAR-10 images instead of 5,000 — CPU; "
                "cross-entropy replaced by ½MSE — design choice",
        "same": "follows the paper's setup",
        "old": "departures from the paper's setup not declared",
        "fine": "",
        "identity": "",  # a consistency check needs neither
        "check-cpu": "differs from the paper in: 250 CIFAR-10 images instead of 5,000 — CPU",
    }
    # a record's claim entry reads the same as the Claim
    entry = a_record(shown())["claims"][0]
    assert v.departure_line(entry) == lines["edge"]


def test_verdict_section_shows_the_departures_from_the_record():
    text = v.verdict_markdown(shown(), scale="book")
    assert ("- **edge** — *not reproduced* (book run): S hovers at 2/η. Differs from the paper in: "
            "250 CIFAR-10 images instead of 5,000 — CPU; cross-entropy replaced by ½MSE — design "
            "choice. Rule:") in text
    assert "- **same** — *partly reproduced* (book run): S hovers at 2/η. Follows the paper's setup. Rule:" in text
    assert "- **old** — *not tested*: x. Departures from the paper's setup not declared." in text
    fine = next(line for line in text.splitlines() if "**fine**" in line)
    assert "paper in" not in fine and "paper's setup" not in fine
    assert "**check-cpu** — *fails* (book run): S hovers at 2/η. Differs from the paper in: 250" in text


def test_claims_table_shows_the_departures_in_the_verdict_cell():
    from eoslib.book import display

    rows = {r.split("**")[1]: r for r in display.claims_table_markdown(shown()).splitlines()
            if r.startswith("| **")}
    assert ("| **not reproduced** (differs from the paper in: 250 CIFAR-10 images instead of 5,000 "
            "— CPU; cross-entropy replaced by ½MSE — design choice) |") in rows["edge"]
    assert "| **partly reproduced** (follows the paper's setup) |" in rows["same"]
    assert "| **not tested** (departures from the paper's setup not declared) |" in rows["old"]
    assert "| **reproduced** |" in rows["fine"] and "| **holds** |" not in rows["identity"]
    assert "| **fails** |" in rows["identity"]


def test_scorecard_shows_the_departures_beside_the_verdict():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book" / "_ext"))
    import scorecard as sc

    record = a_record(shown())
    html = sc.claims_html([sc.Chapter("demo", "Demo", "demo.html", record)])
    rows = {r.split("<code>")[1].split("</code>")[0]: r for r in html.split("<details")[1:]}
    assert ('<span class="eoslib-departures">differs from the paper in: 250 CIFAR-10 images '
            "instead of 5,000 — CPU; cross-entropy replaced by ½MSE — design choice</span>"
            "</span></summary>") in rows["edge"]
    assert "follows the paper&#x27;s setup</span>" in rows["same"]
    assert "not declared</span>" in rows["old"]
    assert "eoslib-departures" not in rows["fine"] + rows["identity"]
    # the scale table: beside this run's verdict and beside the stored paper-scale run's
    paper = a_record([v.grade(spec(), {"err": 0.5}, scale="paper")])
    paper["scale"] = "paper"
    scales = sc.scales_html([sc.Chapter("demo", "Demo", "demo.html", record)], {"demo": paper})
    edge = scales[scales.index("<code>edge</code>"):scales.index("</tr>", scales.index("<code>edge</code>"))]
    here, there = edge.split("</td>")[1:3]
    assert "250 CIFAR-10 images" in here and "½MSE" in here
    assert "250 CIFAR-10 images" not in there and "cross-entropy replaced by ½MSE — design choice" in there


# ----------------------------------------------------------------------------- chapters


def declared_claims(chapter: str) -> list[ClaimSpec]:
    """The chapter's ``CLAIMS``, from its ``claims`` cell run on its own (as test_verdicts does)."""
    path = NOTEBOOKS / f"{chapter}.py"
    namespace: dict = {}
    exec(compile(claims_cell(path), str(path), "exec"), namespace)
    return namespace["CLAIMS"]


def undeclared(specs) -> list[str]:
    """The ids of the paper claims that list no departure and do not say they follow the paper."""
    return [s.id for s in specs if s.kind == "claim" and not s.departures and not s.follows_paper]


def test_the_book_has_chapters_to_hold():
    assert "dln-rpe" in CHAPTERS and len(CHAPTERS) >= 8, CHAPTERS


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_paper_claim_declares_its_departures(chapter):
    """Each paper claim (kind "claim") lists how its experiment departs from the paper's, or says
    follows_paper=True, so that a verdict that is not reproduced shows what could explain it."""
    specs = declared_claims(chapter)
    missing = undeclared(specs)
    assert not missing, (
        f"{chapter}: the paper claims {missing} list no departure from the paper's setup and do not "
        "say follows_paper=True; declare ClaimSpec(..., departures=(Departure(what, reason), ...)) "
        f"with reason one of {list(v.DEPARTURE_REASONS)}")


def test_the_check_catches_a_chapter_without_departures():
    specs = [spec(departures=()), spec(id="ok", departures=(), follows_paper=True),
             spec(id="cpu"), spec(id="identity", kind="consistency", departures=())]
    assert undeclared(specs) == ["edge"]


def test_the_stored_records_load_and_show_a_line(monkeypatch):
    """The results store's records (the dln-rpe paper-scale run was stored before departures
    existed) still load, checksums and all, and every claim gets its line: every paper claim
    not reproduced, and every consistency check that does not hold and declares departures (one
    that declares none needs no line, :func:`departure_line`; the first stored check that fails,
    kappa-dynamics' model-theorems at long scale, is such a check)."""
    from eoslib.book import store

    root = NOTEBOOKS.parent
    monkeypatch.chdir(root)
    assert store.check(root / "book" / "results") == []
    for run in store.runs(root / "book" / "results"):
        for entry in run.record()["claims"]:
            claim = results.claim_from_dict(entry)
            assert isinstance(v.departure_line(claim), str)
            if claim.kind == "claim":
                needs_line = claim.verdict != "reproduced"
            else:
                needs_line = claim.verdict != "holds" and bool(claim.departures or claim.follows_paper)
            assert v.departure_line(claim) or not needs_line, (run.chapter, claim.id)
