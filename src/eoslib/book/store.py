"""The results store: small runs computed at ``paper`` scale (on a GPU), committed with the book.

A chapter at ``book`` scale shows the paper-scale evidence beside its own run when the store holds
a run of it; otherwise its paper-scale claims are ``not tested``. Layout::

    book/results/manifest.json            # every stored run, with checksums
    book/results/<chapter>-<scale>/<chapter>.json  # the run's results record
    book/results/<chapter>-<scale>/<chapter>-*     # downsampled traces it wrote (.npz / .json)

A manifest entry holds the chapter, scale, parameters, eoslib version, **clean** git hash, JAX
version, device, wall time, and per file its size and sha256. The store refuses a run whose git hash
is dirty or unknown (its code could not be recovered), files over :data:`MAX_FILE_BYTES` and a store
over :data:`MAX_TOTAL_BYTES`. Loading a file checks its sha256 against the manifest.

``python -m eoslib store CHAPTER`` runs a chapter at ``paper`` scale and stores it;
``python -m eoslib store --check`` verifies the manifest (``make test`` does too).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from eoslib.book.results import find_repo_root, read_record

#: The largest file the store accepts, in bytes (traces are downsampled before they are stored).
MAX_FILE_BYTES = 1_000_000
#: The largest store, in bytes, every file together.
MAX_TOTAL_BYTES = 20_000_000
MANIFEST = "manifest.json"
_ENTRY_KEYS = ("chapter", "scale", "parameters", "eoslib_version", "git_hash", "jax_version",
               "device", "wall_time_s", "stored_utc", "files")


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
    return (f"No stored {scale}-scale run of {chapter}: the claims whose evidence is a "
            f"{scale}-scale run are not tested here (store one with `python -m eoslib store {chapter}`).")


def add(chapter: str, source: str | os.PathLike, *, root: str | os.PathLike | None = None,
        allow_dirty: bool = False) -> StoredRun:
    """Store the run in folder ``source`` (as ``python -m eoslib run CHAPTER --out source`` wrote it).

    Takes the record ``source/<chapter>.json`` and every other ``.json`` / ``.npz`` file of ``source``
    whose name starts with the chapter's name (never the executed notebook). The store keeps one run
    per chapter and scale: an earlier one is replaced.

    Raises:
      StoreError: the record's git hash is dirty or unknown (unless ``allow_dirty``, for tests), a
        file is larger than :data:`MAX_FILE_BYTES`, or the store would exceed :data:`MAX_TOTAL_BYTES`.
    """
    source = Path(source)
    record_path = source / f"{chapter}.json"
    if not record_path.is_file():
        raise StoreError(f"no record at {record_path}: run the chapter with --out {source} first")
    record = read_record(record_path)
    prov = record["provenance"]
    if not (allow_dirty or is_clean(str(prov["git_hash"]))):
        raise StoreError(f"refusing a run from git_hash={prov['git_hash']!r}: only runs from a clean "
                         "commit can be stored (commit, then rerun)")
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
        if not (allow_dirty or is_clean(run.git_hash)):
            problems.append(f"{run.chapter}: git_hash {run.git_hash!r} is not a clean commit")
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
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if str(path.relative_to(folder)) not in listed:
            problems.append(f"{path}: not listed in the manifest")
    if total > MAX_TOTAL_BYTES:
        problems.append(f"the store holds {total} bytes, over the {MAX_TOTAL_BYTES}-byte limit")
    return problems
