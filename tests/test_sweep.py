"""Sweeps over a chapter's parameters through submitit's local executor."""

import json

import pytest

from eoslib.book import sweep


def test_grid_is_the_cartesian_product_in_order():
    points = sweep.grid({"a": [1, 2], "b": ["x", "y", "z"]})
    assert points == [{"a": a, "b": b} for a in (1, 2) for b in "xyz"]
    with pytest.raises(ValueError, match="non-empty list"):
        sweep.grid({"a": 3})


def test_point_ids_are_stable_and_distinct():
    a = sweep.point_id("dln-rpe", "smoke", {"steps": 40, "theta0": [-0.1, 10.0]})
    assert a == sweep.point_id("dln-rpe", "smoke", {"theta0": [-0.1, 10.0], "steps": 40})
    assert a != sweep.point_id("dln-rpe", "smoke", {"steps": 41, "theta0": [-0.1, 10.0]})
    assert a != sweep.point_id("dln-rpe", "book", {"steps": 40, "theta0": [-0.1, 10.0]})


def test_unknown_parameter_is_rejected_before_any_job(tmp_path):
    with pytest.raises(ValueError, match="no parameter 'nope'"):
        sweep.sweep("dln-rpe", "smoke", {"nope": [1, 2]}, tmp_path)
    assert not (tmp_path / "submitit").exists()


def test_local_sweep_two_workers_keeps_failed_points(tmp_path, monkeypatch):
    """Two smoke points side by side; a point whose chapter fails is listed with its error."""
    monkeypatch.chdir(sweep.chapters.notebooks_dir().parent)
    rows = sweep.sweep("dln-rpe", "smoke", {"steps": [30, 40]}, tmp_path, workers=2,
                       fixed={"z_coeffs": [0.0, 0.0, 1.0]})
    assert [r["status"] for r in rows] == ["ok", "ok"], rows
    for row in rows:
        folder = tmp_path / row["point"]
        assert (folder / "dln-rpe.json").is_file() and (folder / "dln-rpe.ipynb").is_file()
        assert json.loads((folder / "point.json").read_text())["parameters"]["steps"] == row["parameters"]["steps"]
        assert row["verdicts"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [p["point"] for p in summary["points"]] == [r["point"] for r in rows]
    assert "2 points, 2 ok, 0 failed" in sweep.summary_table(rows)
    # two workers: the two points ran at the same time, in two processes of submitit's executor
    (a, b) = rows
    assert a["started"] < b["finished"] and b["started"] < a["finished"], rows
    assert len(list((tmp_path / "submitit").glob("*_0_log.out"))) == 2

    failing = sweep.run_point("dln-rpe", "smoke", {"theta0": [0.0, 0.0]}, str(tmp_path))
    assert failing["status"] == "failed" and failing["error"], failing
