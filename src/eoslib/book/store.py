"""The results store: small runs computed at ``paper`` scale (on a GPU) or ``long`` scale (the paper's
architecture at the largest size a CPU finishes in about two hours), committed with the book.

A chapter at ``book`` scale shows the paper-scale evidence beside its own run when the store holds
a run of it; otherwise its paper-scale claims are ``not tested``. Beside its verdicts it shows the
verdicts of every stored run of it (``long`` and ``paper``). Layout::

    book/results/manifest.json            # every stored run, with checksums
    book/results/<chapter>-<scale>/<chapter>.json  # the run's results record
    book/results/<chapter>-<scale>/<chapter>-*     # downsampled traces it wrote (.npz / .json)

A manifest entry holds the chapter, scale, parameters, eoslib version, **clean** git hash, the
source digest, JAX version, device, wall time, and per file its size and sha256. The store refuses a
run whose git hash is dirty or unknown (its code could not be recovered), files over
:data:`MAX_FILE_BYTES` and a store over :data:`MAX_TOTAL_BYTES`. Loading a file checks its sha256
against the manifest.

**The code that ran.** A record's provenance carries ``source_digest``
(:func:`eoslib.book.results.source_digest`): a digest of the git blob ids of every ``.py`` file under
``src/eoslib/`` and ``notebooks/`` *as they were on disk when the chapter ran*. A run on a machine
without ``.git`` (a GPU machine that received a copy of the tree) names its commit in
``$EOSLIB_GIT_HASH``; :func:`add` accepts the run only if that commit exists in this repository and
its tree gives the same digest (:func:`commit_digest`). A copy with an uncommitted change, an
untracked module or a notebook edited after the commit therefore cannot be stored under that commit.

A chapter asks for its paper-scale evidence with :func:`paper_evidence` (one visible line, the
stored run when one matches, checked loads of its files) and shows :func:`verdicts_by_scale_markdown`:
per claim its verdict here beside the stored paper-scale verdict, ``not tested`` when none is stored.

``python -m eoslib store CHAPTER`` runs a chapter at ``paper`` scale and stores it
(``--scale long`` at ``long`` scale; both refuse a dirty checkout before running,
:func:`check_storable_checkout`); ``python -m eoslib store --check`` verifies the manifest, every
scale's runs alike (``make test`` does too).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from eoslib.book.results import (SCALES, SOURCE_DIGEST_PATHS, claim_from_dict, digest_of_blobs,
                                 find_repo_root, git_hash, read_record, records_dir, source_digest)

#: The largest file the store accepts, in bytes (traces are downsampled before they are stored).
MAX_FILE_BYTES = 1_000_000
#: The largest store, in bytes, every file together.
MAX_TOTAL_BYTES = 20_000_000
MANIFEST = "manifest.json"
#: The scales whose runs the store keeps (a chapter's smoke and book runs are rebuilt by the book).
STORED_SCALES = ("long", "paper")
_ENTRY_KEYS = ("chapter", "scale", "parameters", "eoslib_version", "git_hash", "source_digest",
               "jax_version", "device", "wall_time_s", "stored_utc", "files")


class StoreError(ValueError):
    """A run the store refuses, or a store that fails its check."""


class StoredFile(NamedTuple):
    """One file of a stored run: its name inside the run's folder, size in bytes and sha256."""

    name: str
    bytes: int
    sha256: str


class StoredRun(NamedTuple):
    """A manifest entry and the folder its files are in.

    Attributes:
      chapter: the chapter's name.
      scale: the scale it ran at (``paper`` for the runs the book shows).
      parameters: the chapter's resolved settings, as its record states them.
      eoslib_version: eoslib's version when it ran.
      git_hash: the clean commit it ran from.
      source_digest: the digest of the code that ran, equal to the commit's own
        (:func:`commit_digest`, checked when the run was stored).
      jax_version: JAX's version when it ran.
      device: the device it ran on (e.g. ``gpu:NVIDIA H200``).
      wall_time_s: the chapter's own wall time.
      stored_utc: when it was stored.
      files: the run's files (:class:`StoredFile`).
      folder: the folder holding the files.
    """

    chapter: str
    scale: str
    parameters: dict
    eoslib_version: str
    git_hash: str
    source_digest: str
    jax_version: str
    device: str
    wall_time_s: float | None
    stored_utc: str
    files: tuple[StoredFile, ...]
    folder: Path

    def path(self, name: str) -> Path:
        """The path of the stored file ``name`` after checking its sha256 against the manifest."""
        entry = {f.name: f for f in self.files}.get(name)
        if entry is None:
            raise StoreError(f"stored run of {self.chapter} has no file {name!r}; "
                             f"it has {sorted(f.name for f in self.files)}")
        path = self.folder / name
        if not path.is_file():
            raise StoreError(f"{path} is listed in the manifest but missing")
        digest = sha256(path)
        if digest != entry.sha256:
            raise StoreError(f"{path}: sha256 {digest} differs from the manifest's {entry.sha256}")
        return path

    def record(self) -> dict[str, Any]:
        """The run's results record (checksum verified)."""
        return read_record(self.path(f"{self.chapter}.json"))

    def describe(self) -> str:
        """One line for a chapter to print: where this evidence comes from."""
        wall = f"{self.wall_time_s:.0f} s" if self.wall_time_s is not None else "unknown time"
        return (f"Stored {self.scale}-scale run of {self.chapter}: eoslib {self.eoslib_version} at "
                f"{self.git_hash[:10]}, JAX {self.jax_version}, {self.device}, {wall}, "
                f"stored {self.stored_utc}.")


def sha256(path: Path) -> str:
    """The hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def store_dir(root: str | os.PathLike | None = None) -> Path:
    """The store's folder: ``root`` if given, else ``$EOSLIB_STORE``, else ``book/results`` of the
    book found from the working directory."""
    if root is not None:
        return Path(root)
    if os.environ.get("EOSLIB_STORE"):
        return Path(os.environ["EOSLIB_STORE"])
    repo = find_repo_root()
    if repo is None:
        raise StoreError("no book found above the working directory; pass root= or set EOSLIB_STORE")
    return repo / "book" / "results"


def _read_manifest(folder: Path) -> list[dict[str, Any]]:
    path = folder / MANIFEST
    if not path.is_file():
        return []
    manifest = json.loads(path.read_text())
    if manifest.get("version") != 1 or not isinstance(manifest.get("runs"), list):
        raise StoreError(f"{path} is not a version-1 manifest with a 'runs' list")
    return manifest["runs"]


def _write_manifest(folder: Path, runs: list[dict[str, Any]]) -> None:
    runs = sorted(runs, key=lambda r: (r["chapter"], r["scale"], json.dumps(r["parameters"], sort_keys=True)))
    (folder / MANIFEST).write_text(json.dumps({"version": 1, "runs": runs}, indent=2) + "\n")


def _entry_to_run(entry: Mapping[str, Any], folder: Path) -> StoredRun:
    missing = [k for k in _ENTRY_KEYS if k not in entry]
    if missing:
        raise StoreError(f"manifest entry {entry.get('chapter', '?')!r} is missing {missing}")
    files = tuple(StoredFile(f["name"], int(f["bytes"]), f["sha256"]) for f in entry["files"])
    fields = {k: entry[k] for k in _ENTRY_KEYS if k != "files"}
    return StoredRun(**fields, files=files, folder=folder / _run_folder(entry["chapter"], entry["scale"]))


def _run_folder(chapter: str, scale: str) -> str:
    return f"{chapter}-{scale}"


def runs(root: str | os.PathLike | None = None) -> list[StoredRun]:
    """Every stored run."""
    folder = store_dir(root)
    return [_entry_to_run(e, folder) for e in _read_manifest(folder)]


def is_clean(git_hash: str) -> bool:
    """Whether ``git_hash`` names a clean commit (40 hex digits, no ``+dirty`` or other suffix)."""
    return len(git_hash) == 40 and all(c in "0123456789abcdef" for c in git_hash)


def _default_repo() -> Path:
    """The checkout the store belongs to: the book found from the working directory, else the one
    this eoslib was imported from."""
    return find_repo_root() or Path(__file__).resolve().parents[3]


def commit_digest(commit: str, repo: str | os.PathLike | None = None) -> str:
    """The source digest of ``commit`` of the git repository ``repo`` (default: this checkout):
    :func:`eoslib.book.results.digest_of_blobs` of the blob ids ``git ls-tree`` lists for the
    ``.py`` files under :data:`eoslib.book.results.SOURCE_DIGEST_PATHS`.

    Raises:
      StoreError: ``commit`` is not a commit of ``repo`` (or ``repo`` is not a git repository).
    """
    repo = Path(repo) if repo is not None else _default_repo()
    try:
        listing = subprocess.run(
            ["git", "ls-tree", "-r", "--full-tree", f"{commit}^{{commit}}", "--", *SOURCE_DIGEST_PATHS],
            cwd=repo, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        detail = getattr(err, "stderr", "") or str(err)
        raise StoreError(f"commit {commit!r} is not in the git repository at {repo} "
                         f"({detail.strip()}); push or fetch it before storing the run") from None
    blobs = {}
    for line in listing.splitlines():
        meta, path = line.split("\t", 1)
        mode, kind, blob = meta.split()
        if kind == "blob" and path.endswith(".py"):
            blobs[path] = blob
    return digest_of_blobs(blobs)


def verify_source(provenance: Mapping[str, Any], repo: str | os.PathLike | None = None) -> None:
    """Check that a record's code is a clean commit of ``repo``: its ``git_hash`` is a full commit
    hash with no ``+dirty`` suffix, and its ``source_digest`` (the code as it was on disk when the
    chapter ran) equals that commit's own (:func:`commit_digest`).

    Raises:
      StoreError: the hash is dirty or unknown, the digest is missing, the commit is not in
        ``repo``, or the code that ran differs from the commit.
    """
    git_hash = str(provenance.get("git_hash"))
    if not is_clean(git_hash):
        raise StoreError(f"refusing a run from git_hash={git_hash!r}: only runs from a clean "
                         "commit can be stored (commit, then rerun; on a machine without .git set "
                         "EOSLIB_GIT_HASH to the commit the tree was copied from)")
    digest = provenance.get("source_digest")
    if not digest:
        raise StoreError(f"refusing a run without provenance.source_digest (git_hash {git_hash}): "
                         "the code that ran cannot be compared with its commit (rerun with this eoslib)")
    expected = commit_digest(git_hash, repo)
    if digest != expected:
        raise StoreError(f"refusing a run whose code differs from commit {git_hash[:10]}: its "
                         f"source_digest {digest[:12]}… is not the commit's {expected[:12]}… (the tree "
                         "that ran had uncommitted or untracked changes under "
                         f"{', '.join(SOURCE_DIGEST_PATHS)}; commit them, then rerun)")


def check_storable_checkout(repo: str | os.PathLike | None = None) -> str:
    """Check, before a run that is to be stored, that the code it will run (the checkout this
    eoslib was imported from; the checkout ``repo`` when given) is a clean commit of it: what :func:`add` checks afterwards on the run's record (:func:`verify_source`), made
    before an hours-long ``long`` or ``paper`` run rather than after it. Returns the commit.

    Raises:
      StoreError: the checkout has uncommitted changes (or untracked modules) under
        :data:`eoslib.book.results.SOURCE_DIGEST_PATHS`, or is not a git checkout.
    """
    here = ({"git_hash": git_hash(), "source_digest": source_digest()} if repo is None else
            {"git_hash": git_hash(Path(repo)), "source_digest": source_digest(Path(repo))})
    try:
        verify_source(here, repo)
    except StoreError as err:
        raise StoreError(f"not running: the run could not be stored. {err}") from None
    return here["git_hash"]


def find(chapter: str, scale: str = "paper", parameters: Mapping[str, Any] | None = None,
         root: str | os.PathLike | None = None) -> StoredRun | None:
    """The stored run of ``chapter`` at ``scale`` whose parameters include every item of
    ``parameters`` (all of them when ``None``); the latest stored if several match; ``None`` if none."""
    wanted = json.loads(json.dumps(dict(parameters or {})))  # compare as JSON would store them
    matches = [r for r in runs(root) if r.chapter == chapter and r.scale == scale
               and all(r.parameters.get(k) == v for k, v in wanted.items())]
    return max(matches, key=lambda r: r.stored_utc) if matches else None


def describe(chapter: str, stored: StoredRun | None, scale: str = "paper") -> str:
    """The visible line a chapter prints about its stored evidence (or its absence)."""
    if stored is not None:
        return stored.describe()
    command = f"python -m eoslib store {chapter}" + ("" if scale == "paper" else f" --scale {scale}")
    return (f"No stored {scale}-scale run of {chapter}: the claims whose evidence is a "
            f"{scale}-scale run are not tested here (store one with `{command}`).")


def add(chapter: str, source: str | os.PathLike, *, root: str | os.PathLike | None = None,
        repo: str | os.PathLike | None = None, allow_dirty: bool = False,
        commit: str | None = None) -> StoredRun:
    """Store the run in folder ``source`` (as ``python -m eoslib run CHAPTER --out source`` wrote it).

    Takes the record ``source/<chapter>.json`` and every other ``.json`` / ``.npz`` file of ``source``
    whose name starts with the chapter's name (never the executed notebook). The store keeps one run
    per chapter and scale: an earlier one is replaced. ``source`` may come from another machine
    (a GPU run brought back): what is checked is the record's provenance, against ``repo`` (default:
    this checkout) with :func:`verify_source`. ``commit``: the commit the run was started from
    (:func:`check_storable_checkout`'s answer); the record must name it, so a chapter whose kernel
    imported eoslib from another checkout (a relative ``PYTHONPATH``, another editable install)
    is refused instead of being stored under that other checkout's commit.

    Raises:
      StoreError: the record's code is not a clean commit of ``repo`` (:func:`verify_source`;
        skipped with ``allow_dirty``, for tests), or not ``commit``, the record is not of ``chapter``, a file is larger
        than :data:`MAX_FILE_BYTES`, or the store would exceed :data:`MAX_TOTAL_BYTES`.
    """
    source = Path(source)
    record_path = source / f"{chapter}.json"
    if not record_path.is_file():
        raise StoreError(f"no record at {record_path}: run the chapter with --out {source} first")
    record = read_record(record_path)
    if record["chapter"] != chapter:
        raise StoreError(f"{record_path} is a record of {record['chapter']!r}, not of {chapter!r}")
    if record["scale"] not in STORED_SCALES:
        raise StoreError(f"{record_path} is a {record['scale']}-scale run; the store keeps "
                         f"{list(STORED_SCALES)} runs (the book reruns the others)")
    prov = record["provenance"]
    if commit is not None and prov.get("git_hash") != commit:
        raise StoreError(
            f"refusing the run in {source}: it was started from commit {commit[:10]}, but its "
            f"record names {str(prov.get('git_hash'))[:10]}: the chapter's kernel imported eoslib "
            "from another checkout (a relative PYTHONPATH, or another checkout's editable "
            "install); run from the checkout's own environment, or with PYTHONPATH absolute")
    if not allow_dirty:
        verify_source(prov, repo)
    names = sorted(p.name for p in source.iterdir()
                   if p.is_file() and p.name.startswith(chapter) and p.suffix in (".json", ".npz"))
    for name in names:
        size = (source / name).stat().st_size
        if size > MAX_FILE_BYTES:
            raise StoreError(f"{source / name} has {size} bytes; stored files are at most "
                             f"{MAX_FILE_BYTES} (downsample the traces)")
    folder = store_dir(root)
    entries = [e for e in _read_manifest(folder)
               if not (e["chapter"] == chapter and e["scale"] == record["scale"])]
    others = sum(f["bytes"] for e in entries for f in e["files"])
    new_bytes = sum((source / n).stat().st_size for n in names)
    if others + new_bytes > MAX_TOTAL_BYTES:
        raise StoreError(f"the store would hold {others + new_bytes} bytes; at most {MAX_TOTAL_BYTES}")
    target = folder / _run_folder(chapter, record["scale"])
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    files = []
    for name in names:
        shutil.copy2(source / name, target / name)
        files.append({"name": name, "bytes": (target / name).stat().st_size, "sha256": sha256(target / name)})
    entry = {"chapter": chapter, "scale": record["scale"], "parameters": record["parameters"],
             "eoslib_version": prov["eoslib_version"], "git_hash": prov["git_hash"],
             "source_digest": prov.get("source_digest") or "",
             "jax_version": prov["jax_version"], "device": prov["device"],
             "wall_time_s": prov.get("wall_time_s"),
             "stored_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "files": files}
    _write_manifest(folder, entries + [entry])
    return _entry_to_run(entry, folder)


def check(root: str | os.PathLike | None = None, *, allow_dirty: bool = False) -> list[str]:
    """Every problem of the store: a listed file missing or with another sha256 or size, a file
    no entry lists, a dirty git hash, a file or the whole store over its limit. Empty when sound."""
    folder = store_dir(root)
    problems: list[str] = []
    if not folder.is_dir():
        return problems
    try:
        stored = runs(folder)
    except (StoreError, KeyError, TypeError, ValueError) as err:
        return [f"{folder / MANIFEST}: {err}"]
    listed = {MANIFEST}
    total = 0
    for run in stored:
        if run.scale not in SCALES or run.scale in ("smoke", "book"):
            problems.append(f"{run.chapter}: scale {run.scale!r} is not a stored scale "
                            f"(the store keeps {list(STORED_SCALES)} runs)")
        if not (allow_dirty or is_clean(run.git_hash)):
            problems.append(f"{run.chapter}: git_hash {run.git_hash!r} is not a clean commit")
        if not (allow_dirty or run.source_digest):
            problems.append(f"{run.chapter}: no source_digest (the code that ran is unverified)")
        if not allow_dirty and run.source_digest and is_clean(run.git_hash):
            try:  # a clone without the commit (a shallow CI checkout) cannot compare: skipped
                expected = commit_digest(run.git_hash)
            except StoreError:
                expected = run.source_digest
            if expected != run.source_digest:
                problems.append(f"{run.chapter}: source_digest differs from commit {run.git_hash[:10]}'s")
        for f in run.files:
            path = run.folder / f.name
            listed.add(str(path.relative_to(folder)))
            total += f.bytes
            if not path.is_file():
                problems.append(f"{path}: listed in the manifest but missing")
                continue
            if path.stat().st_size != f.bytes or sha256(path) != f.sha256:
                problems.append(f"{path}: size or sha256 differs from the manifest")
            if f.bytes > MAX_FILE_BYTES:
                problems.append(f"{path}: {f.bytes} bytes, over the {MAX_FILE_BYTES}-byte limit")
        record_name = f"{run.chapter}.json"
        if record_name not in {f.name for f in run.files}:
            problems.append(f"{run.chapter} ({run.scale}): no record {record_name} among its files")
        elif (run.folder / record_name).is_file():
            try:
                record = run.record()
            except (StoreError, ValueError) as err:
                problems.append(f"{run.chapter} ({run.scale}): {err}")
            else:
                if (record["chapter"], record["scale"]) != (run.chapter, run.scale):
                    problems.append(f"{run.chapter} ({run.scale}): its record is of "
                                    f"{record['chapter']!r} at scale {record['scale']!r}")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if str(path.relative_to(folder)) not in listed:
            problems.append(f"{path}: not listed in the manifest")
    if total > MAX_TOTAL_BYTES:
        problems.append(f"the store holds {total} bytes, over the {MAX_TOTAL_BYTES}-byte limit")
    return problems


# --- what a chapter shows: its paper-scale evidence ----------------------------------------------

def trace_path(results_dir: str | os.PathLike | None, name: str) -> Path:
    """Where a chapter's trace ``name`` goes: beside its record (``results_dir``, else
    :func:`eoslib.book.results.records_dir`), where :func:`add` picks it up."""
    return records_dir(results_dir) / name


def save_trace(results_dir: str | os.PathLike | None, name: str, **arrays: Any) -> Path:
    """Write the arrays to ``<results_dir>/<name>`` (compressed ``.npz``) for the store to keep.

    ``name`` must start with the chapter's name and end in ``.npz`` (what :func:`add` takes). A file
    over :data:`MAX_FILE_BYTES` is still written (a long run is never lost) and a line says so:
    downsample the traces, or :func:`add` refuses it.

    Raises:
      ValueError: ``name`` does not end in ``.npz``.
    """
    if not name.endswith(".npz"):
        raise ValueError(f"name={name!r}: a trace is a .npz file named <chapter>-<what>.npz")
    import numpy as np

    path = trace_path(results_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **{k: np.asarray(v) for k, v in arrays.items()})
    size = path.stat().st_size
    print(f"trace written to {path} ({size} bytes)"
          + (f"; over the store's {MAX_FILE_BYTES}-byte limit: downsample it" if size > MAX_FILE_BYTES
             else ""))
    return path


class PaperEvidence(NamedTuple):
    """A chapter's paper-scale evidence, as :func:`paper_evidence` found it.

    Attributes:
      chapter: the chapter's name.
      scale: the scale of the chapter's own run.
      stored: the stored paper-scale run matching the chapter's parameters, ``None`` if there is
        none (or when this run is itself the paper-scale run).
      line: the visible line the chapter prints: where its paper-scale evidence comes from.
      own: whether this run is itself the paper-scale evidence.
      others: the chapter's stored runs at the other stored scales (``{"long": StoredRun}``),
        each the latest stored at that scale whatever its parameters (the store keeps one per
        chapter and scale), the run's own scale left out; shown beside the verdicts
        (:func:`verdicts_by_scale_markdown`).
    """

    chapter: str
    scale: str
    stored: StoredRun | None
    line: str
    own: bool = False
    others: Mapping[str, StoredRun] = {}

    def records(self) -> dict[str, dict[str, Any]]:
        """Every stored record to show beside this run's verdicts, by scale in
        :data:`eoslib.book.results.SCALES` order (``long`` then ``paper``; sha256 checked)."""
        found = {scale: run.record() for scale, run in self.others.items()}
        if self.stored is not None:
            found["paper"] = self.stored.record()
        return {scale: found[scale] for scale in SCALES if scale in found}

    @property
    def available(self) -> bool:
        """Whether paper-scale evidence exists here (this run is it, or one is stored)."""
        return self.own or self.stored is not None

    def record(self) -> dict[str, Any] | None:
        """The stored run's record (sha256 checked), ``None`` without a stored run."""
        return self.stored.record() if self.stored is not None else None

    def path(self, name: str) -> Path | None:
        """The stored file ``name`` (sha256 checked), ``None`` without a stored run.

        Raises:
          StoreError: the stored run has no such file, or its checksum differs from the manifest.
        """
        return self.stored.path(name) if self.stored is not None else None


def paper_evidence(chapter: str, scale: str, match: Mapping[str, Any] | None = None, *,
                   own: bool | None = None, root: str | os.PathLike | None = None) -> PaperEvidence:
    """Where ``chapter``'s paper-scale evidence comes from, with the line to print.

    At ``scale="paper"`` the run itself is that evidence (its record and the traces it writes are
    what ``python -m eoslib store`` keeps), unless ``own=False`` (a paper-scale run of another
    setting than the one the claims need). Otherwise the stored paper-scale run whose parameters
    include every item of ``match`` (:func:`find`; typically the chapter's paper-scale defaults, or
    the settings that define the experiment), or none: then the claims that need it are
    ``not tested``. A store that cannot be read counts as none, and the line says why. The
    chapter's stored runs at the other stored scales (``long``) are found too, whatever their
    parameters (:attr:`PaperEvidence.others`; one line each is added), for the verdicts table.

    Args:
      chapter: the chapter's name.
      scale: the scale of the chapter's own run (``smoke``, ``book``, ``long`` or ``paper``).
      match: parameters the stored run must have (JSON-comparable values).
      own: whether this run is itself the paper-scale evidence (default: ``scale == "paper"``).
      root: the store's folder (default :func:`store_dir`).
    """
    try:
        others = {s: r for s in STORED_SCALES if s not in ("paper", scale)
                  for r in [find(chapter, s, root=root)] if r is not None}
    except (StoreError, OSError, KeyError, TypeError, ValueError):
        others = {}  # said below, when the paper-scale lookup meets the same store
    also = "".join(" " + r.describe() for r in others.values())
    if (scale == "paper") if own is None else own:
        return PaperEvidence(chapter, scale, None,
                             f"This is a {scale}-scale run of {chapter}: it is its own paper-scale "
                             f"evidence (keep it with `python -m eoslib store {chapter} --source DIR`)."
                             + also, own=True, others=others)
    try:
        stored = find(chapter, "paper", match, root=root)
    except (StoreError, OSError, KeyError, TypeError, ValueError) as err:
        return PaperEvidence(chapter, scale, None,
                             f"The results store could not be read ({err}); " + describe(chapter, None))
    line = describe(chapter, stored)
    if stored is not None and match:
        line += f" It matches {_settings_text(match)}."
    elif stored is None and match:
        line = (f"No stored paper-scale run of {chapter} with {_settings_text(match)}: the claims "
                "whose evidence is a paper-scale run are not tested here "
                f"(store one with `python -m eoslib store {chapter}`).")
    return PaperEvidence(chapter, scale, stored, line + also, others=others)


def _settings_text(match: Mapping[str, Any], most: int = 4) -> str:
    items = [f"{k} = {json.dumps(v)}" for k, v in match.items()]
    if len(items) > most:
        rest = len(items) - most
        return ", ".join(items[:most]) + f" and {rest} more setting{'s' if rest > 1 else ''}"
    return ", ".join(items)


class ScaleRow(NamedTuple):
    """One paper claim's verdict at the chapter's own scale and in the stored paper-scale run.

    Attributes:
      id: the claim's id.
      claim: the claim's text.
      here: its verdict in the chapter's own run (``scale`` of that record).
      paper: its verdict in the stored paper-scale run; ``not tested`` without one, or when the
        stored record lacks the claim.
      changed: whether the two verdicts differ; ``None`` when no paper-scale run was compared.
    """

    id: str
    claim: str
    here: str
    paper: str
    changed: bool | None


def verdicts_by_scale(claims: Any, paper_record: Mapping[str, Any] | None) -> list[ScaleRow]:
    """Per paper claim of ``claims`` (a record's claim dicts or :class:`~eoslib.book.results.Claim`
    objects; consistency checks are left out), its verdict here and in ``paper_record``.

    A claim the paper-scale record does not have is ``not tested`` there and counts as a change
    only when its verdict here is not ``not tested`` too.
    """
    paper = {}
    if paper_record is not None:
        paper = {c["id"]: claim_from_dict(c).verdict for c in paper_record["claims"]}
    rows = []
    for entry in claims:
        c = entry if not isinstance(entry, Mapping) else claim_from_dict(entry)
        if c.kind != "claim":
            continue
        there = paper.get(c.id, "not tested")
        rows.append(ScaleRow(c.id, c.claim, c.verdict, there,
                             None if paper_record is None else there != c.verdict))
    return rows


class ScalesRow(NamedTuple):
    """One paper claim's verdict in the chapter's own run and in each stored run shown beside it.

    Attributes:
      id: the claim's id.
      claim: the claim's text.
      here: its verdict in the chapter's own run.
      stored: ``{scale: verdict}`` per stored record compared (``not tested`` where that record
        lacks the claim), in :data:`eoslib.book.results.SCALES` order.
      changed: the scales whose verdict differs from ``here``, in the same order.
      earlier_rule: the scales whose record graded the claim by a rule other than this run's (the
        record's ``rule`` text differs: it was made before the rule changed), in the same order.
    """

    id: str
    claim: str
    here: str
    stored: dict[str, str]
    changed: tuple[str, ...]
    earlier_rule: tuple[str, ...] = ()


EARLIER_RULE_MARK = "†"
EARLIER_RULE_NOTE = ("graded by an earlier rule than this run's: the stored run was made before the "
                     "claim's rule changed, so its verdict is not this rule's; rerunning that scale "
                     "from the current code grades it again.")


def verdicts_across_scales(claims: Any, records: Mapping[str, Mapping[str, Any]]) -> list[ScalesRow]:
    """Per paper claim of ``claims`` (consistency checks are left out), its verdict here and in
    each record of ``records`` (``{scale: record}``, e.g. :meth:`PaperEvidence.records`)."""
    by_scale = {scale: {c["id"]: claim_from_dict(c) for c in record["claims"]}
                for scale, record in records.items()}
    rows = []
    for entry in claims:
        c = entry if not isinstance(entry, Mapping) else claim_from_dict(entry)
        if c.kind != "claim":
            continue
        found = {scale: stored.get(c.id) for scale, stored in by_scale.items()}
        there = {scale: s.verdict if s is not None else "not tested" for scale, s in found.items()}
        rows.append(ScalesRow(c.id, c.claim, c.verdict, there,
                              tuple(s for s, v in there.items() if v != c.verdict),
                              tuple(scale for scale, s in found.items()
                                    if s is not None and s.rule != c.rule)))
    return rows


def verdicts_by_scale_markdown(claims: Any, evidence: PaperEvidence) -> str:
    """The table a chapter shows under its claims: per paper claim its verdict in this run, in the
    chapter's stored ``long`` run when one is stored, and in the stored paper-scale run
    (``not tested`` there when none is stored), and whether it changed. When this run is itself the
    paper-scale evidence, one line says so (and a stored ``long`` run, if any, is compared)."""
    records = evidence.records()
    if evidence.own:
        records.pop("paper", None)
        if not records:
            return "This run is at paper scale: its verdicts above are the paper-scale verdicts."
    columns = [s for s in records if s != "paper"] + ([] if evidence.own else ["paper"])
    rows = verdicts_across_scales(claims, records)
    compared = bool(records)

    def changed(row: ScalesRow) -> str:
        if not compared:
            return "—"
        if not row.changed:
            return "no"
        return "**yes**" if list(records) == ["paper"] else f"**yes** ({', '.join(row.changed)})"

    head = [f"| claim | {evidence.scale} run (this page) | "
            + " | ".join(f"stored {s}-scale run" for s in columns) + " | changed |",
            "|---|---|" + "---|" * len(columns) + "---|"]
    body = [f"| {r.id} | {r.here} | "
            + " | ".join(r.stored.get(s, "not tested") + (EARLIER_RULE_MARK if s in r.earlier_rule
                                                          else "") for s in columns)
            + f" | {changed(r)} |" for r in rows]
    note = ("" if evidence.own or "paper" in records else
            "\n\nNo paper-scale run of this chapter is stored, so every claim is not tested at "
            "paper scale.")
    if any(r.earlier_rule for r in rows):
        note += f"\n\n{EARLIER_RULE_MARK} {EARLIER_RULE_NOTE}"
    return "\n".join(head + body) + note
