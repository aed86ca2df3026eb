"""`python -m eoslib run CHAPTER --no-kernel`: a chapter run as a plain program, as on a GPU machine
that has JAX but none of IPython, jupytext, papermill or submitit."""

import os
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

from eoslib.book import chapters, script
from eoslib.book.results import read_record

ROOT = Path(__file__).resolve().parents[1]
BLOCKER = '''
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"IPython", "jupytext", "papermill", "nbformat", "nbclient",
                                  "ipykernel", "jupyter_client", "submitit"}:
            raise ImportError(f"{name} is not installed on this (simulated) GPU machine")
        return None
sys.meta_path.insert(0, _Block())
'''


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.py")), ids=lambda p: p.stem)
def test_read_percent_reads_what_jupytext_reads(path):
    ours = script.read_percent(path).cells
    theirs = jupytext.read(path, fmt="py:percent").cells
    assert [c.cell_type for c in ours] == [c.cell_type for c in theirs]
    for a, b in zip(ours, theirs):
        if b.cell_type == "code":
            assert a.source == b.source
            assert a.metadata.get("tags", []) == b.metadata.get("tags", [])


def test_read_percent_needs_a_parameters_cell(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("# %%\nx = 1\n")
    with pytest.raises(ValueError, match="no cell tagged 'parameters'"):
        script.execute(bad, tmp_path / "out", scale="smoke", parameters={})


def test_a_failing_cell_names_itself(tmp_path):
    nb = tmp_path / "boom.py"
    nb.write_text('# %% tags=["parameters"]\nscale = None\nresults_dir = None\n\n'
                  '# %% [markdown]\n# text\n\n# %%\nassert scale == "smoke"\n1 / 0\n')
    with pytest.raises(RuntimeError, match=r"code cell 2 of 2 failed: ZeroDivisionError"):
        script.execute(nb, tmp_path / "out", scale="smoke", parameters={})


def test_a_chapter_runs_without_jupyter(tmp_path):
    """dln-rpe at smoke scale with IPython, jupytext, papermill and submitit unimportable."""
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "src")])}
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "eoslib", "run", "dln-rpe", "--scale", "smoke",
                           "--no-kernel", "-p", "steps", "30", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "notebook: (none: --no-kernel)" in done.stdout
    record = read_record(out / "dln-rpe.json")
    assert record["scale"] == "smoke" and record["parameters"]["steps"] == 30
    assert record["provenance"]["source_digest"]
    assert not list(out.glob("*.ipynb"))
    chapter = chapters.get_chapter("dln-rpe")
    assert {c["id"] for c in record["claims"]} >= {"RPE", "threshold"}
    assert chapter.name == "dln-rpe"
