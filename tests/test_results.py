"""Results records: schema, JSON round trip, provenance."""

import json
import math

import numpy as np
import pytest

from eoslib.book import results
from eoslib.book.results import Claim


def a_record(**overrides):
    fields = dict(
        chapter="demo", scale="smoke", parameters={"eta": 0.01, "theta0": (1.0, 2.0)},
        claims=[Claim("c1", "a claim", "1.0", "1.01", "reproduced", "within 1%")],
        metrics={"eta": np.float32(0.01), "nan_metric": float("nan"), "series": np.arange(3)},
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
