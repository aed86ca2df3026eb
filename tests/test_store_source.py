"""The store cannot be fooled by a dirty tree: a run's source digest must be its commit's own, also
for a run made on a machine without .git (a GPU machine) that names its commit in EOSLIB_GIT_HASH.
And what a chapter shows: its paper-scale evidence line and the verdicts-by-scale table."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from eoslib.book import store
from eoslib.book.results import Claim, git_hash, make_record, source_digest, write_record

ROOT = Path(__file__).resolve().parents[1]


def _git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture()
def repo(tmp_path):
    root = tmp_path / "repo"
    (root / "src" / "eoslib" / "book").mkdir(parents=True)
    (root / "notebooks").mkdir()
    (root / "src" / "eoslib" / "core.py").write_text("X = 1\n")
    (root / "src" / "eoslib" / "book" / "cli.py").write_text("Y = 2\n")
    (root / "src" / "eoslib" / "README.txt").write_text("not code\n")
    (root / "notebooks" / "demo.py").write_text("# %%\nprint(1)\n")
    (root / ".gitignore").write_text("__pycache__/\n")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "demo")
    return root


def _gpu_copy(repo, tmp_path):
    """The tree as a GPU machine receives it: the files, no .git."""
    copy = tmp_path / "gpu-copy"
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns(".git"))
    return copy


def _record_from(copy, tmp_path, head, name="demo", params=None, verdicts=("reproduced",)):
    prov = {"eoslib_version": "0.2.0", "git_hash": head, "source_digest": source_digest(copy),
            "jax_version": "0.11.2", "device": "gpu:NVIDIA H200", "wall_time_s": 300.0}
    claims = [Claim(f"c{i}", f"claim {i}", "p", "o", v) for i, v in enumerate(verdicts)]
    out = tmp_path / f"out-{len(list(tmp_path.iterdir()))}"
    write_record(make_record(name, "paper", params or {"eta": 0.02}, claims, {"m": 1.0}, prov), out)
    return out


def test_a_clean_copy_is_stored_under_its_commit(repo, tmp_path):
    head = _git(repo, "rev-parse", "HEAD")
    copy = _gpu_copy(repo, tmp_path)
    (copy / "src" / "eoslib" / "__pycache__").mkdir()
    (copy / "src" / "eoslib" / "__pycache__" / "core.cpython-312.py").write_text("cache")  # ignored
    (copy / "src" / "eoslib" / "README.txt").write_text("changed, but not code")  # not .py
    assert source_digest(copy) == store.commit_digest(head, repo) == source_digest(repo)
    run = store.add("demo", _record_from(copy, tmp_path, head), root=tmp_path / "store", repo=repo)
    assert run.git_hash == head and run.source_digest == source_digest(repo)
    assert store.check(tmp_path / "store") == []


@pytest.mark.parametrize("change", ["edit module", "untracked module", "edit chapter", "delete module"])
def test_a_changed_copy_is_refused_under_a_clean_hash(repo, tmp_path, change):
    head = _git(repo, "rev-parse", "HEAD")
    copy = _gpu_copy(repo, tmp_path)
    if change == "edit module":
        (copy / "src" / "eoslib" / "core.py").write_text("X = 2\n")
    elif change == "untracked module":
        (copy / "src" / "eoslib" / "book" / "patch.py").write_text("Z = 3\n")
    elif change == "edit chapter":
        (copy / "notebooks" / "demo.py").write_text("# %%\nprint(2)\n")
    else:
        (copy / "src" / "eoslib" / "book" / "cli.py").unlink()
    source = _record_from(copy, tmp_path, head)
    with pytest.raises(store.StoreError, match="differs from commit"):
        store.add("demo", source, root=tmp_path / "store", repo=repo)
    assert not (tmp_path / "store").exists()


def test_unknown_commit_and_missing_digest_are_refused(repo, tmp_path):
    copy = _gpu_copy(repo, tmp_path)
    with pytest.raises(store.StoreError, match="not in the git repository"):
        store.add("demo", _record_from(copy, tmp_path, "f" * 40), root=tmp_path / "store", repo=repo)
    source = _record_from(copy, tmp_path, _git(repo, "rev-parse", "HEAD"))
    record = json.loads((source / "demo.json").read_text())
    del record["provenance"]["source_digest"]
    (source / "demo.json").write_text(json.dumps(record))
    with pytest.raises(store.StoreError, match="source_digest"):
        store.add("demo", source, root=tmp_path / "store", repo=repo)


def test_a_copy_without_git_reports_the_commit_it_was_told(repo, tmp_path, monkeypatch):
    copy = _gpu_copy(repo, tmp_path)
    monkeypatch.setenv("EOSLIB_GIT_HASH", "a" * 40)
    assert git_hash(copy) == "a" * 40
    monkeypatch.delenv("EOSLIB_GIT_HASH")
    assert git_hash(copy) == "unknown"
    assert git_hash(repo) == _git(repo, "rev-parse", "HEAD")


def test_this_checkouts_head_digest_matches_its_exported_tree(tmp_path):
    """The digest from git objects and from files agree on the real repository (git archive of HEAD)."""
    try:
        head = _git(ROOT, "rev-parse", "HEAD")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    export = tmp_path / "export"
    export.mkdir()
    archive = subprocess.run(["git", "archive", head, "src", "notebooks"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(export)], input=archive, check=True)
    assert source_digest(export) == store.commit_digest(head, ROOT)


def test_paper_evidence_lines(repo, tmp_path):
    root = tmp_path / "store"
    at_paper = store.paper_evidence("demo", "paper", {"eta": 0.02}, root=root)
    assert at_paper.available and at_paper.stored is None and "its own paper-scale" in at_paper.line
    none = store.paper_evidence("demo", "book", {"eta": 0.02}, root=root)
    assert not none.available and none.record() is None and none.path("x") is None
    assert "not tested" in none.line and "eta = 0.02" in none.line
    head = _git(repo, "rev-parse", "HEAD")
    store.add("demo", _record_from(_gpu_copy(repo, tmp_path), tmp_path, head), root=root, repo=repo)
    found = store.paper_evidence("demo", "book", {"eta": 0.02}, root=root)
    assert found.available and found.record()["metrics"] == {"m": 1.0}
    assert "H200" in found.line and "matches eta = 0.02" in found.line
    other = store.paper_evidence("demo", "book", {"eta": 0.04}, root=root)
    assert other.stored is None and "not tested" in other.line
    (root / store.MANIFEST).write_text('{"version": 2}')
    broken = store.paper_evidence("demo", "book", {"eta": 0.02}, root=root)
    assert broken.stored is None and "could not be read" in broken.line


def test_verdicts_by_scale(repo, tmp_path):
    here = [Claim("c0", "a", "p", "o", "reproduced"), Claim("c1", "b", "p", "o", "not tested"),
            Claim("c2", "c", "p", "o", "partly reproduced"),
            Claim("k", "check", "p", "o", "holds", kind="consistency")]
    rows = store.verdicts_by_scale(here, None)
    assert [(r.id, r.paper, r.changed) for r in rows] == [
        ("c0", "not tested", None), ("c1", "not tested", None), ("c2", "not tested", None)]
    head = _git(repo, "rev-parse", "HEAD")
    root = tmp_path / "store"
    store.add("demo", _record_from(_gpu_copy(repo, tmp_path), tmp_path, head,
                                   verdicts=("reproduced", "not reproduced")), root=root, repo=repo)
    evidence = store.paper_evidence("demo", "book", {}, root=root)
    rows = store.verdicts_by_scale(here, evidence.record())
    assert [(r.id, r.here, r.paper, r.changed) for r in rows] == [
        ("c0", "reproduced", "reproduced", False), ("c1", "not tested", "not reproduced", True),
        ("c2", "partly reproduced", "not tested", True)]
    text = store.verdicts_by_scale_markdown(here, evidence)
    assert "| c1 | not tested | not reproduced | **yes** |" in text and "| k |" not in text
    empty = store.verdicts_by_scale_markdown(here, store.paper_evidence("demo", "book", {"eta": 9},
                                                                         root=root))
    assert "| c0 | reproduced | not tested | — |" in empty and "not tested at paper scale" in empty
    assert "paper scale" in store.verdicts_by_scale_markdown(here, store.paper_evidence("demo", "paper"))
