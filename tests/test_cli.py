"""The reader-facing command line: list, run (through papermill), prepare, and its errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eoslib.book import chapters, cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("text, value", [
    ("[-0.2, 5.0]", [-0.2, 5.0]), ("0.01", 0.01), ("true", True), ("null", None),
    ("cnn-relu", "cnn-relu"), ("'quoted'", "quoted"), ("(1, 2)", (1, 2)),
])
def test_parse_value(text, value):
    assert cli.parse_value(text) == value


def test_every_chapter_declares_its_parameters_and_scales():
    found = chapters.discover()
    assert "dln-rpe" in found
    for chapter in found.values():
        assert {"scale", "results_dir"} <= set(chapter.parameter_names)
        settable = set(chapter.parameter_names) - {"scale", "results_dir"}
        for scale, table in chapter.scales.items():
            assert set(table) == settable, (chapter.name, scale)


def test_list_prints_parameters_with_defaults(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "dln-rpe" in out and "theta0" in out and "[-0.1, 10.0]" in out


@pytest.mark.parametrize("argv, fragment", [
    (["run", "no-such-chapter"], "chapter 'no-such-chapter' does not exist; chapters: ["),
    (["run", "dln-rpe", "-p", "eta", "0.1"], "has no parameter 'eta'; its parameters are ["),
    (["run", "dln-rpe", "-p", "scale", "paper"], "'scale' is set by --scale"),
])
def test_run_rejects_unknown_names(argv, fragment, capsys):
    assert cli.main(argv) == 2
    assert fragment in capsys.readouterr().err


def test_unknown_scale_is_rejected():
    proc = subprocess.run([sys.executable, "-m", "eoslib", "run", "dln-rpe", "--scale", "huge"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "invalid choice: 'huge'" in proc.stderr


def test_prepare_injects_parameters(tmp_path):
    assert cli.main(["prepare", "dln-rpe", "--scale", "smoke", "--out", str(tmp_path)]) == 0
    nb = json.loads((tmp_path / "dln-rpe.ipynb").read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and 'scale = "smoke"' in "".join(injected[0]["source"])


def test_run_end_to_end_with_a_new_init(tmp_path):
    """The README's example: the record's numbers match the init that was asked for."""
    proc = subprocess.run(
        [sys.executable, "-m", "eoslib", "run", "dln-rpe", "--scale", "smoke",
         "-p", "theta0", "[-0.2, 5.0]", "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "dln-rpe.json").read_text())
    assert (tmp_path / "dln-rpe.ipynb").is_file()
    assert record["parameters"]["theta0"] == [-0.2, 5.0] and record["scale"] == "smoke"
    # independent reference: H of z = Θ² at (−0.2, 5) is [[2θ2², 4Θ], [4Θ, 2θ1²]]
    t1, t2 = -0.2, 5.0
    lam_max = np.linalg.eigvalsh(np.array([[2 * t2**2, 4 * t1 * t2], [4 * t1 * t2, 2 * t1**2]]))[-1]
    assert record["metrics"]["eta_eos"] == pytest.approx(2 / lam_max, rel=1e-12)
    beta = abs(2 * (t2**2 - t1**2) / (2 * 4 * t1 * t2))
    assert record["metrics"]["R2_init"] == pytest.approx(beta + np.sqrt(beta**2 + 1), rel=1e-12)
    assert {c["id"] for c in record["claims"]} == {"RPE", "monotonicity", "threshold", "closed-forms"}


def test_failing_chapter_reports_the_cell_and_error(tmp_path, capsys):
    code = cli.main(["run", "dln-rpe", "--scale", "smoke", "-p", "theta0", "[0, 1]",
                     "--out", str(tmp_path)])
    assert code == 1
    assert "ValueError: theta0=[0, 1] must have θ₁θ₂ ≠ 0" in capsys.readouterr().err
