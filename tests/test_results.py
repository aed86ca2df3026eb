"""Results records: schema, JSON round trip, provenance."""

import json
import math

import numpy as np
import pytest

from eoslib.book import results
from eoslib.book.verdicts import metric_value
from eoslib.book.results import Claim


def a_record(**overrides):
    fields = dict(
        chapter="demo", scale="smoke", parameters={"eta": 0.01, "theta0": (1.0, 2.0)},
        claims=[Claim("c1", "a claim", "1.0", "1.01", "reproduced", "within 1%")],
        metrics={"eta": np.float32(0.01), "nan_metric": float("nan"), "series": np.arange(3),
                 "diverged_error": np.float32("inf"), "floor": -math.inf},
        provenance=results.provenance(0.0),
    )
    fields.update(overrides)
    return results.make_record(**fields)


def test_record_round_trip(tmp_path):
    record = a_record()
    path = results.write_record(record, tmp_path)
    assert path == tmp_path / "demo.json"
    back = results.read_record(path)
    assert back["parameters"]["theta0"] == [1.0, 2.0]
    assert back["metrics"]["nan_metric"] is None  # JSON has no NaN
    assert back["metrics"]["series"] == [0, 1, 2]
    # an infinity (a diverged run's error) stays one, so regrading the record still rejects it
    assert back["metrics"]["diverged_error"] == "inf" and back["metrics"]["floor"] == "-inf"
    assert metric_value(back["metrics"], "diverged_error") == math.inf
    assert metric_value(back["metrics"], "floor") == -math.inf
    assert math.isnan(metric_value(back["metrics"], "nan_metric"))
    assert math.isclose(back["metrics"]["eta"], 0.01, rel_tol=1e-6)
    assert json.loads(path.read_text())["claims"][0]["verdict"] == "reproduced"
    assert results.read_records(tmp_path)[0]["chapter"] == "demo"
    assert results.read_records(tmp_path / "absent") == []


def test_provenance_names_versions_and_device():
    prov = results.provenance(0.0, data_source="x")
    for key in ("eoslib_version", "git_hash", "jax_version", "device", "wall_time_s"):
        assert key in prov
    assert prov["data_source"] == "x" and prov["device"].startswith("cpu")


def test_bad_verdict_names_the_value():
    with pytest.raises(ValueError, match="verdict='sort of'"):
        Claim("c1", "x", "1", "2", "sort of")


@pytest.mark.parametrize("mutate, fragment", [
    (lambda r: r.pop("metrics"), "missing"),
    (lambda r: r.update(scale="huge"), "scale='huge'"),
    (lambda r: r.update(claims=[]), "no claims"),
    (lambda r: r["claims"][0].pop("paper"), "claims\\[0\\] is missing"),
    (lambda r: r["metrics"].update(bad="text"), "metrics\\['bad'\\]"),
    (lambda r: r["provenance"].pop("git_hash"), "git_hash"),
])
def test_validate_record_names_the_broken_field(mutate, fragment):
    record = a_record()
    mutate(record)
    with pytest.raises(ValueError, match=fragment):
        results.validate_record(record)


def test_records_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("EOSLIB_RECORDS", raising=False)
    assert results.records_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.setenv("EOSLIB_RECORDS", str(tmp_path / "env"))
    assert results.records_dir() == tmp_path / "env"
    monkeypatch.delenv("EOSLIB_RECORDS")
    (tmp_path / "_toc.yml").write_text("root: intro\n")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert results.records_dir() == tmp_path / "_build" / "records"


def test_not_tested_is_a_verdict_and_checks_have_their_own_outcomes():
    Claim("c", "x", "1", "n/a", "not tested")
    Claim("c", "x", "1", "1", "holds", kind="consistency")
    with pytest.raises(ValueError, match="verdict='reproduced' is not one of .*consistency"):
        Claim("c", "x", "1", "1", "reproduced", kind="consistency")
    with pytest.raises(ValueError, match="kind='toy'"):
        Claim("c", "x", "1", "1", "holds", kind="toy")


def test_hand_written_claims_stay_valid_and_read_with_defaults(tmp_path):
    """Records of chapters not yet converted (six claim keys only) validate and read back."""
    record = a_record()
    for claim in record["claims"]:
        for key in results.CLAIM_DEFAULTS:
            claim.pop(key)
    results.validate_record(record)
    back = results.claim_from_dict(record["claims"][0])
    assert (back.kind, back.rule, back.evidence) == ("claim", "", "")


def test_record_stores_rule_control_evidence_and_kind():
    record = a_record(claims=[
        Claim("c1", "a claim", "1", "1", "not tested", "n/a", rule="x ≤ 1", control="null",
              evidence="book run"),
        Claim("c2", "an identity", "0", "0", "holds", kind="consistency"),
    ])
    c1, c2 = record["claims"]
    assert (c1["rule"], c1["control"], c1["evidence"], c1["kind"]) == ("x ≤ 1", "null", "book run", "claim")
    assert c2["kind"] == "consistency"
    bad = dict(c1, rule=3)
    with pytest.raises(ValueError, match="rule=3 is not a string"):
        results.validate_record(dict(record, claims=[bad]))


def test_tally_counts_the_four_verdicts_and_checks_apart():
    claims = [Claim("a", "x", "1", "1", "reproduced"), Claim("b", "x", "1", "1", "not tested"),
              {"id": "c", "claim": "x", "paper": "1", "ours": "1", "verdict": "not reproduced", "note": ""},
              Claim("d", "x", "1", "1", "holds", kind="consistency")]
    verdicts, checks = results.tally(claims)
    assert verdicts == {"reproduced": 1, "partly reproduced": 0, "not reproduced": 1, "not tested": 1}
    assert checks == {"holds": 1, "fails": 0, "not tested": 0}
