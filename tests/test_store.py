"""The results store: manifest, checksums, refusal of dirty runs, size limits, and the book's own store."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from eoslib.book import store
from eoslib.book.results import Claim, make_record, write_record

from eoslib.book.results import source_digest

ROOT = Path(__file__).resolve().parents[1]


def _git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture()
def repo(tmp_path):
    """A tiny checkout with one module and one chapter, committed: the code a stored run ran."""
    root = tmp_path / "repo"
    (root / "src" / "eoslib").mkdir(parents=True)
    (root / "notebooks").mkdir()
    (root / "src" / "eoslib" / "core.py").write_text("X = 1\n")
    (root / "notebooks" / "demo.py").write_text("# %%\nprint(1)\n")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "demo")
    return root


def _clean(repo):
    return {"git_hash": _git(repo, "rev-parse", "HEAD"), "source_digest": source_digest(repo)}


def _run_folder(tmp_path, prov_code, chapter="demo", extra_bytes=10, params=None):
    src = tmp_path / f"src-{prov_code['git_hash'][:6]}-{extra_bytes}-{len(list(tmp_path.iterdir()))}"
    prov = {"eoslib_version": "0.2.0", **prov_code, "jax_version": "0.10.2",
            "device": "gpu:NVIDIA H200", "wall_time_s": 12.5}
    record = make_record(chapter, "paper", params or {"eta": 0.02},
                         [Claim("c1", "a claim", "paper", "ours", "reproduced")], {"m": 1.0}, prov)
    write_record(record, src)
    (src / f"{chapter}-trace.npz").write_bytes(b"x" * extra_bytes)
    (src / f"{chapter}.ipynb").write_text("{}")  # never stored
    return src


def test_add_find_load_roundtrip(tmp_path, repo):
    root = tmp_path / "store"
    run = store.add("demo", _run_folder(tmp_path, _clean(repo)), root=root, repo=repo)
    assert sorted(f.name for f in run.files) == ["demo-trace.npz", "demo.json"]
    found = store.find("demo", "paper", {"eta": 0.02}, root=root)
    assert found is not None and found.git_hash == _clean(repo)["git_hash"]
    assert found.device == "gpu:NVIDIA H200" and found.source_digest == source_digest(repo)
    assert found.record()["metrics"] == {"m": 1.0}
    assert found.path("demo-trace.npz").read_bytes() == b"x" * 10
    assert store.find("demo", "paper", {"eta": 0.04}, root=root) is None  # other parameters
    assert store.find("other", root=root) is None
    assert "H200" in store.describe("demo", found) and "not tested" in store.describe("other", None)
    assert store.check(root) == []


def test_dirty_or_unknown_runs_are_refused(tmp_path, repo):
    clean = _clean(repo)
    for bad in (clean["git_hash"] + "+dirty", "4d86bae393aab3c581224f64d21edaef34396bd0+eos-intro-wip",
                "unknown"):
        with pytest.raises(store.StoreError, match="clean"):
            store.add("demo", _run_folder(tmp_path, {**clean, "git_hash": bad}),
                      root=tmp_path / "store", repo=repo)


def test_tampered_file_fails_the_check_and_the_load(tmp_path, repo):
    root = tmp_path / "store"
    run = store.add("demo", _run_folder(tmp_path, _clean(repo)), root=root, repo=repo)
    (run.folder / "demo-trace.npz").write_bytes(b"y" * 10)
    assert any("sha256" in p for p in store.check(root))
    with pytest.raises(store.StoreError, match="sha256"):
        run.path("demo-trace.npz")
    (root / "stray.npz").write_bytes(b"z")
    assert any("not listed" in p for p in store.check(root))


def test_size_limits(tmp_path, monkeypatch, repo):
    monkeypatch.setattr(store, "MAX_FILE_BYTES", 100)
    with pytest.raises(store.StoreError, match="at most 100"):
        store.add("demo", _run_folder(tmp_path, _clean(repo), extra_bytes=101),
                  root=tmp_path / "store", repo=repo)


def test_a_new_run_replaces_the_old_one(tmp_path, repo):
    root = tmp_path / "store"
    store.add("demo", _run_folder(tmp_path, _clean(repo), params={"eta": 0.02}), root=root, repo=repo)
    store.add("demo", _run_folder(tmp_path, _clean(repo), params={"eta": 0.04}, extra_bytes=20),
              root=root, repo=repo)
    assert [r.parameters for r in store.runs(root)] == [{"eta": 0.04}]
    assert store.check(root) == []


def test_the_books_store_is_sound():
    """What `make test` checks: every stored run matches its manifest (CLI, exit code 0)."""
    out = subprocess.run([sys.executable, "-m", "eoslib", "store", "--check"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    manifest = ROOT / "book" / "results" / store.MANIFEST
    if manifest.exists():
        assert json.loads(manifest.read_text())["version"] == 1


def test_a_run_must_name_the_commit_it_was_started_from(tmp_path, repo):
    """``store`` checks the checkout before the run and the record after it: a record naming
    another (clean) commit — the kernel imported eoslib from another checkout — is refused."""
    first = _clean(repo)
    (repo / "src" / "eoslib" / "core.py").write_text("X = 2\n")
    _git(repo, "commit", "-qam", "other")
    other = _clean(repo)
    with pytest.raises(store.StoreError, match="another checkout"):
        store.add("demo", _run_folder(tmp_path, first), root=tmp_path / "store", repo=repo,
                  commit=other["git_hash"])
    run = store.add("demo", _run_folder(tmp_path, other), root=tmp_path / "store", repo=repo,
                    commit=other["git_hash"])
    assert run.git_hash == other["git_hash"]
