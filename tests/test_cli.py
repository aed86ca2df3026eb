"""The reader-facing command line: list, run (through papermill), prepare, and its errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eoslib.book import chapters, cli
from eoslib.book.scales import settings

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
    assert "list[float != 0], length 2" in out  # the declared range


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
         "-p", "theta0", "[-0.2, 5.0]", "-p", "eta_fractions", "[0.1, 0.95, 1.1, 1.3]",
         "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "dln-rpe.json").read_text())
    assert (tmp_path / "dln-rpe.ipynb").is_file()
    assert record["parameters"]["theta0"] == [-0.2, 5.0] and record["scale"] == "smoke"
    # independent reference: H of z = Θ² at (−0.2, 5) is [[2θ2², 4Θ], [4Θ, 2θ1²]]
    t1, t2 = -0.2, 5.0
    lam_max = np.linalg.eigvalsh(np.array([[2 * t2**2, 4 * t1 * t2], [4 * t1 * t2, 2 * t1**2]]))[-1]
    assert record["metrics"]["eta_2_over_lambda_max"] == pytest.approx(2 / lam_max, rel=1e-12)
    # the paper's η_eos = 2θ1/(θ2 z'), z' = 2Θ: 1/θ2² for z = Θ² (not 2/λmax)
    assert record["metrics"]["eta_eos_paper"] == pytest.approx(1 / t2**2, rel=1e-12)
    assert "eta_eos" not in record["metrics"]
    # the step sizes run are Fig. 1's fractions of that η_eos, so both regimes are entered
    assert record["metrics"]["etas_run"] == pytest.approx([0.1 / t2**2, 0.95 / t2**2, 1.1 / t2**2,
                                                           1.3 / t2**2], rel=1e-12)
    assert record["metrics"]["n_stable"] == 2 and record["metrics"]["n_unstable"] == 2
    beta = abs(2 * (t2**2 - t1**2) / (2 * 4 * t1 * t2))
    assert record["metrics"]["R2_init"] == pytest.approx(beta + np.sqrt(beta**2 + 1), rel=1e-12)
    assert {c["id"] for c in record["claims"]} == {"RPE", "monotone-until-stable", "threshold",
                                                   "closed-forms", "gamma-beta-exact"}


def test_failing_chapter_reports_the_cell_and_error(tmp_path, capsys):
    """A value inside its declared range that the chapter's library code still rejects."""
    code = cli.main(["run", "dln-rpe", "--scale", "smoke", "-p", "z_coeffs", "[0, 1]",
                     "--out", str(tmp_path)])
    assert code == 1
    assert "ValueError: z_coeffs=[0.0, 1.0] is not allowed: z(Θ) = Σ c_k Θ^k needs c_k = 0 for odd k" \
        in capsys.readouterr().err


def run_cli(*argv, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "eoslib", *argv], capture_output=True, text=True, cwd=cwd)


def one_line_error(proc):
    """The run stopped before papermill with exit code 2 and exactly one line on stderr."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize("chapter, name, value, message", [
    ("eos-intro", "steps", "1.5", "error: steps=1.5 is not allowed (it is not an int); "
                                  "allowed: int >= 1, multiple of probe_every"),
    ("eos-intro", "steps", "-5", "error: steps=-5 is not allowed (it is not >= 1); "
                                 "allowed: int >= 1, multiple of probe_every"),
    ("eos-intro", "steps", "130", "error: steps=130 is not allowed (it is not a multiple of probe_every=40); "
                                  "allowed: int >= 1, multiple of probe_every"),
    ("eos-intro", "eta", "nan", "error: eta='nan' is not allowed (it is NaN); allowed: float > 0"),
    ("eos-intro", "eta", "inf", "error: eta='inf' is not allowed (it is not finite); allowed: float > 0"),
    ("eos-intro", "eta", "1e999", "error: eta=inf is not allowed (it is not finite); allowed: float > 0"),
    ("eos-intro", "eta", "fast", "error: eta='fast' is not allowed (it is not a number); allowed: float > 0"),
    ("eos-intro", "arch", "resnet", "error: arch='resnet' is not allowed (it is not one of ['fc-tanh', 'fc-relu', "
                                    "'fc-elu', 'cnn-relu', 'cnn-tanh', 'vgg', 'vgg10', 'vgg19', 'resnet20']); "
                                    "allowed: cifar10-model"),
    ("weight-decay", "seeds", "2", "error: seeds=2 is not allowed (it is not a list); "
                                   "allowed: list[int >= 0], non-empty"),
    ("weight-decay", "gammas", "[0.01, 0.02]", "error: gammas=[0.01, 0.02] is not allowed (it does not contain 0); "
                                               "allowed: list[float >= 0], contains 0"),
    ("kappa-dynamics", "cases", "['I', 'IV']", "error: cases=['I', 'IV'] is not allowed (element 1 ('IV'): it is "
                                               "not one of ['I', 'II', 'III']); allowed: list[kappa-case], non-empty"),
    ("clipped-ada", "taus", "[1e-6]", "error: taus=[1e-06] is not allowed (it does not contain inf); "
                                      "allowed: list[float in (0, inf]], contains inf"),
    ("dln-rpe", "theta0", "[0, 1]", "error: theta0=[0, 1] is not allowed (element 0 (0): it is not != 0); "
                                    "allowed: list[float != 0], length 2"),
])
def test_run_checks_every_value_before_executing(chapter, name, value, message, tmp_path):
    """The issue's cases (and more): one line naming the parameter, the value and what is allowed,
    exit code 2, nothing run (no notebook written)."""
    proc = run_cli("run", chapter, "--scale", "smoke", "-p", name, value, "--out", str(tmp_path / "out"))
    assert one_line_error(proc) == message
    assert not (tmp_path / "out").exists()


def test_out_naming_an_existing_file_is_rejected(tmp_path):
    existing = tmp_path / "file.txt"
    existing.write_text("not a folder")
    proc = run_cli("run", "dln-rpe", "--scale", "smoke", "--out", str(existing))
    assert one_line_error(proc) == (f"error: --out {existing} is an existing file, not a folder; "
                                    "allowed: a folder (created if missing)")
    proc = run_cli("run", "dln-rpe", "--scale", "smoke", "--out", str(existing / "sub"))
    assert one_line_error(proc) == (f"error: --out {existing / 'sub'} cannot be created: {existing} is a file, "
                                    "not a folder; allowed: a folder (created if missing)")


def test_every_chapter_declares_a_range_its_defaults_satisfy():
    for chapter in chapters.discover().values():
        assert set(chapter.ranges) == set(chapter.parameter_names) - set(chapters.COMMON_PARAMETERS)
        for scale in chapter.scales:
            chapters.check_parameters(chapter, scale, {})  # the scale's own defaults are in range


def test_range_check_inside_the_chapter_matches_the_cli():
    """settings() — what the chapter runs under papermill — gives the CLI's message."""
    chapter = chapters.get_chapter("weight-decay")
    with pytest.raises(ValueError) as from_cli:
        chapters.check_parameters(chapter, "smoke", {"seeds": 2})
    with pytest.raises(ValueError) as from_notebook:
        settings(chapter.scales, "smoke", chapter.ranges, seeds=2)
    assert str(from_cli.value) == str(from_notebook.value)


def test_the_kernel_imports_the_eoslib_this_process_imported(tmp_path, monkeypatch):
    """A chapter's kernel starts in the chapter's folder: a relative PYTHONPATH entry is made
    absolute here, and the checkout this eoslib came from goes first, so the kernel never runs
    (and records the commit of) another checkout's eoslib."""
    import eoslib

    monkeypatch.chdir(tmp_path)
    path = chapters.kernel_pythonpath("src" + os.pathsep + "/abs/lib")
    entries = path.split(os.pathsep)
    here = Path(eoslib.__file__).resolve().parents[1]
    assert entries[0] == str(here) and here.name == "src"
    assert entries[1:] == [str(tmp_path / "src"), "/abs/lib"]
    assert chapters.kernel_pythonpath(None) == str(here)
