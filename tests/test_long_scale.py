"""The optional ``long`` scale (issue 35): a chapter may declare it, one that does not keeps working
and says so when asked for it, and the results store keeps long runs beside paper runs."""

import json
import subprocess
from pathlib import Path

import pytest

from eoslib.book import chapters, cli, store
from eoslib.book.results import (OPTIONAL_SCALES, REQUIRED_SCALES, SCALES, Claim, make_record,
                                 source_digest, write_record)
from eoslib.book.scales import NoSuchScale, check_scales, settings

ROOT = Path(__file__).resolve().parents[1]
RANGES = {"steps": "int >= 1", "eta": "float > 0"}
BASE = {"smoke": {"steps": 10, "eta": 0.1}, "book": {"steps": 100, "eta": 0.1},
        "paper": {"steps": 1000, "eta": 0.1}}
WITH_LONG = dict(BASE, long={"steps": 500, "eta": 0.1})

CHAPTER = '''# %% [markdown]
# # A demo chapter

# %% tags=["parameters"]
scale = "smoke"
results_dir = None
steps = None  # how many steps

# %%
RANGES = {"steps": "int >= 1"}
SCALES = SCALES_TABLE
'''


def test_the_scales():
    assert SCALES == ("smoke", "book", "long", "paper")
    assert REQUIRED_SCALES == ("smoke", "book", "paper") and OPTIONAL_SCALES == ("long",)


def test_long_is_optional_and_resolves_where_declared():
    assert settings(BASE, "book", RANGES).steps == 100  # a chapter without long keeps working
    assert settings(WITH_LONG, "long", RANGES).as_dict() == {"scale": "long", "steps": 500, "eta": 0.1}
    assert settings(WITH_LONG, "long", RANGES, steps=7).steps == 7


def test_asking_for_an_undeclared_long_scale_says_so():
    with pytest.raises(NoSuchScale, match=r"declares no long scale .*add SCALES\['long'\]"):
        settings(BASE, "long", RANGES)


@pytest.mark.parametrize("table, message", [
    ({k: v for k, v in BASE.items() if k != "paper"}, r"must declare .* it lacks \['paper'\]"),
    (dict(BASE, huge={"steps": 1, "eta": 1.0}), r"declares \['huge'\]; allowed"),
    (dict(BASE, long={"steps": 500}), "every scale must declare the same settings"),
])
def test_malformed_tables_are_rejected(table, message):
    with pytest.raises(ValueError, match=message):
        check_scales(table)
    with pytest.raises(ValueError, match=message):
        settings(table, "book", RANGES)


def _chapters(tmp_path, monkeypatch, scales):
    folder = tmp_path / "notebooks"
    folder.mkdir(exist_ok=True)
    (folder / "demo.py").write_text(CHAPTER.replace("SCALES_TABLE", json.dumps(scales)))
    monkeypatch.setenv("EOSLIB_NOTEBOOKS", str(folder))
    return folder


def test_a_chapter_without_long_parses_and_refuses_a_long_run(tmp_path, monkeypatch, capsys):
    _chapters(tmp_path, monkeypatch, {"smoke": {"steps": 1}, "book": {"steps": 2}, "paper": {"steps": 3}})
    chapter = chapters.get_chapter("demo")
    assert set(chapter.scales) == set(REQUIRED_SCALES)
    with pytest.raises(NoSuchScale, match="chapter demo declares no long scale"):
        chapters.check_parameters(chapter, "long", {})
    assert cli.main(["run", "demo", "--scale", "long", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "chapter demo declares no long scale" in err and "notebooks/demo.py" in err
    assert not (tmp_path / "out").exists()
    assert cli.main(["store", "demo", "--scale", "long"]) == 2  # refused before running
    assert "declares no long scale" in capsys.readouterr().err
    assert cli.main(["list"]) == 0
    header = [line for line in capsys.readouterr().out.splitlines() if "parameter" in line][0]
    assert header.split()[:4] == ["parameter", "smoke", "book", "paper"]


def test_a_chapter_with_long_lists_it(tmp_path, monkeypatch, capsys):
    _chapters(tmp_path, monkeypatch, {"smoke": {"steps": 1}, "book": {"steps": 2},
                                      "long": {"steps": 4}, "paper": {"steps": 3}})
    chapters.check_parameters(chapters.get_chapter("demo"), "long", {"steps": 5})
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    header = [line for line in out.splitlines() if "parameter" in line][0]
    assert header.split()[:5] == ["parameter", "smoke", "book", "long", "paper"]
    assert "1      2     4     3" in out


def test_a_chapter_missing_a_required_scale_is_an_error(tmp_path, monkeypatch):
    _chapters(tmp_path, monkeypatch, {"smoke": {"steps": 1}, "long": {"steps": 4}})
    with pytest.raises(ValueError, match=r"SCALES must declare .* it lacks \['book', 'paper'\]"):
        chapters.discover()


# --- the store keeps long runs ----------------------------------------------------------------

def _git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture()
def repo(tmp_path):
    root = tmp_path / "repo"
    (root / "src" / "eoslib").mkdir(parents=True)
    (root / "notebooks").mkdir()
    (root / "src" / "eoslib" / "core.py").write_text("X = 1\n")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "demo")
    return root


def _run(tmp_path, repo, scale, verdicts, chapter="demo", params=None):
    prov = {"eoslib_version": "0", "git_hash": _git(repo, "rev-parse", "HEAD"),
            "source_digest": source_digest(repo), "jax_version": "0", "device": "cpu",
            "wall_time_s": 5400.0}
    claims = [Claim(f"c{i}", f"claim {i}", "p", "o", v) for i, v in enumerate(verdicts)]
    out = tmp_path / f"out-{scale}-{len(list(tmp_path.iterdir()))}"
    write_record(make_record(chapter, scale, params or {"steps": 1}, claims, {"m": 1.0}, prov), out)
    (out / f"{chapter}-trace.npz").write_bytes(b"t")
    return out


def test_long_runs_are_stored_beside_paper_runs_and_checked(tmp_path, repo):
    root = tmp_path / "store"
    run = store.add("demo", _run(tmp_path, repo, "long", ["reproduced"]), root=root, repo=repo)
    assert run.scale == "long" and run.folder == root / "demo-long"
    store.add("demo", _run(tmp_path, repo, "paper", ["not reproduced"]), root=root, repo=repo)
    assert sorted(r.scale for r in store.runs(root)) == ["long", "paper"]
    assert store.find("demo", "long", root=root).wall_time_s == 5400.0
    assert store.check(root) == []
    # a long entry is checked like a paper one: tampering, a record of another scale
    (root / "demo-long" / "demo-trace.npz").write_bytes(b"x")
    assert any("demo-long" in p and "sha256" in p for p in store.check(root))
    store.add("demo", _run(tmp_path, repo, "long", ["reproduced"]), root=root, repo=repo)
    manifest = json.loads((root / store.MANIFEST).read_text())
    for entry in manifest["runs"]:
        if entry["scale"] == "paper":
            entry["scale"] = "book"
    (root / store.MANIFEST).write_text(json.dumps(manifest))
    (root / "demo-paper").rename(root / "demo-book")
    problems = store.check(root)
    assert any("'book' is not a stored scale" in p for p in problems)
    assert any("its record is of 'demo' at scale 'paper'" in p for p in problems)


def test_book_runs_are_not_stored(tmp_path, repo):
    with pytest.raises(store.StoreError, match="book-scale run; the store keeps"):
        store.add("demo", _run(tmp_path, repo, "book", ["reproduced"]), root=tmp_path / "s", repo=repo)


def test_a_dirty_checkout_is_refused_before_running(repo):
    assert store.check_storable_checkout(repo) == _git(repo, "rev-parse", "HEAD")
    (repo / "src" / "eoslib" / "core.py").write_text("X = 2\n")
    with pytest.raises(store.StoreError, match="not running: the run could not be stored.*clean"):
        store.check_storable_checkout(repo)
    _git(repo, "checkout", "--", ".")
    (repo / "src" / "eoslib" / "new.py").write_text("Y = 1\n")  # untracked module
    with pytest.raises(store.StoreError, match="differs from commit"):
        store.check_storable_checkout(repo)


def test_the_chapter_shows_book_long_and_paper_verdicts(tmp_path, repo):
    here = [Claim("c0", "a", "p", "o", "not tested"), Claim("c1", "b", "p", "o", "reproduced"),
            Claim("k", "check", "p", "o", "holds", kind="consistency")]
    root = tmp_path / "store"
    store.add("demo", _run(tmp_path, repo, "long", ["partly reproduced", "reproduced"]),
              root=root, repo=repo)
    evidence = store.paper_evidence("demo", "book", {"steps": 1}, root=root)
    assert list(evidence.others) == ["long"] and evidence.stored is None
    assert "Stored long-scale run of demo" in evidence.line and "not tested" in evidence.line
    text = store.verdicts_by_scale_markdown(here, evidence)
    assert "| claim | book run (this page) | stored long-scale run | stored paper-scale run | changed |" in text
    assert "| c0 | not tested | partly reproduced | not tested | **yes** (long) |" in text
    assert "| c1 | reproduced | reproduced | not tested | no |" in text  # only stored runs compare
    assert "No paper-scale run of this chapter is stored" in text and "| k |" not in text
    store.add("demo", _run(tmp_path, repo, "paper", ["partly reproduced", "reproduced"]),
              root=root, repo=repo)
    evidence = store.paper_evidence("demo", "book", {"steps": 1}, root=root)
    assert list(evidence.records()) == ["long", "paper"]
    text = store.verdicts_by_scale_markdown(here, evidence)
    assert "| c0 | not tested | partly reproduced | partly reproduced | **yes** (long, paper) |" in text
    assert "| c1 | reproduced | reproduced | reproduced | no |" in text
    # the long run's own page compares with the stored paper run only
    at_long = store.paper_evidence("demo", "long", {"steps": 1}, root=root)
    assert at_long.others == {} and at_long.stored is not None
    assert "stored long-scale run" not in store.verdicts_by_scale_markdown(here, at_long)
    # a paper-scale page compares with the stored long run
    at_paper = store.paper_evidence("demo", "paper", root=root)
    text = store.verdicts_by_scale_markdown(here, at_paper)
    assert "| claim | paper run (this page) | stored long-scale run | changed |" in text
    rows = store.verdicts_across_scales(here, evidence.records())
    assert [(r.id, r.changed) for r in rows] == [("c0", ("long", "paper")), ("c1", ())]
