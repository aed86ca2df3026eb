"""Results records: what every chapter writes, and what the scorecard is built from.

A record is a JSON object::

    {
      "chapter":    "dln-rpe",                       # the chapter's name (its notebook's stem)
      "scale":      "book",                          # smoke | book | long | paper
      "parameters": {...},                           # every experiment setting, resolved
      "claims":     [{"id", "claim", "paper", "ours", "verdict", "note",
                      "rule", "control", "evidence", "kind",
                      "departures": [{"what", "reason"[, "always"]}, ...], "follows_paper"}, ...],
      "metrics":    {"name": number, ...},           # named numbers the chapter measured
      "provenance": {"eoslib_version", "git_hash", "jax_version", "device", "wall_time_s", ...}
    }

A claim's ``kind`` is ``"claim"`` (a paper claim; ``verdict`` is one of :data:`VERDICTS`) or
``"consistency"`` (a check that holds by construction, recorded but never scored; ``verdict`` is
one of :data:`CHECK_OUTCOMES`). ``rule`` (the declared rule as text), ``control`` (the control or
null model) and ``evidence`` (where the evidence comes from, e.g. ``"book run"``) are written by
:func:`eoslib.book.verdicts.grade`; records whose claims lack them (written by hand as
``Claim(id, claim, paper, ours, verdict, note)``) stay valid, read as a paper claim with empty
rule, control and evidence. ``departures`` (how the experiment behind the verdict differs from the
paper's, each with its reason, one of :data:`DEPARTURE_REASONS`, and ``"always": true`` for one
shown beside a ``reproduced`` verdict too) and ``follows_paper`` (it follows
the paper's setup) are written by :func:`eoslib.book.verdicts.grade` from the claim's declared
:class:`eoslib.book.verdicts.Departure` list; a record written before they existed (the results
store keeps such records, checksummed, unchanged) reads as ``[]`` and ``false``: nothing declared.
Numbers are plain JSON numbers; a non-finite metric is stored as ``null`` (JSON has no NaN) and
read back as ``nan``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from eoslib import __version__

#: The four verdicts a paper claim can get; ``not tested`` (no evidence at this scale) is neither
#: a success nor a failure.
VERDICTS = ("reproduced", "partly reproduced", "not reproduced", "not tested")
#: The outcomes of a consistency check (holds by construction; never scored as reproduced).
CHECK_OUTCOMES = ("holds", "fails", "not tested")
#: The two kinds of claim, a paper claim and a consistency check.
KINDS = ("claim", "consistency")
#: The scales a chapter runs at, in order of size — CI seconds, book minutes on a CPU, ``long`` (the paper's
#: architecture at the largest size a CPU finishes in about two hours, run once and kept in the
#: results store), the paper's settings.
SCALES = ("smoke", "book", "long", "paper")
#: The scales every chapter declares; a chapter may leave out the others (:data:`OPTIONAL_SCALES`).
REQUIRED_SCALES = ("smoke", "book", "paper")
#: The scales a chapter may leave out (a chapter without ``SCALES["long"]`` has no long run).
OPTIONAL_SCALES = tuple(s for s in SCALES if s not in REQUIRED_SCALES)
RECORD_KEYS = ("chapter", "scale", "parameters", "claims", "metrics", "provenance")
CLAIM_KEYS = ("id", "claim", "paper", "ours", "verdict", "note")
#: Optional claim keys, with the value a record without them is read as.
CLAIM_DEFAULTS = {"rule": "", "control": "", "evidence": "", "kind": "claim", "departures": [],
                  "follows_paper": False}
#: The reasons an experiment may depart from its paper's, in this order. The book runs on CPUs
#: (fewer images, steps, step sizes), the paper does not say (a setting we had to choose), the
#: paper's formula was lost or left implicit and we reconstructed it, we chose otherwise on
#: purpose, or the paper's data is not available where the book runs (offline; eoslib downloads
#: it elsewhere).
DEPARTURE_REASONS = ("CPU", "not stated in the paper", "reconstructed formula", "design choice",
                     "data availability")
_DEPARTURE_KEYS = ("what", "reason")
#: The optional key of a departure entry: ``True`` when it is shown beside every verdict,
#: ``reproduced`` included (absent: shown beside every verdict but ``reproduced``).
_DEPARTURE_ALWAYS = "always"


@dataclass(frozen=True)
class Claim:
    """One claim of a paper, the paper's number, ours, and the verdict.

    ``paper`` and ``ours`` are short human-readable strings (a number with its setting), so the
    scorecard can show them side by side; the exact numbers go into the record's ``metrics``.
    Declared claims are graded into a ``Claim`` by :func:`eoslib.book.verdicts.grade`, which
    fills ``rule``, ``control``, ``evidence`` and ``kind``; a chapter not yet converted builds
    one by hand with the first six fields.

    Attributes:
      id: short identifier, unique in the chapter.
      claim: the paper's statement.
      paper: the paper's number, with its setting.
      ours: our number, with ours.
      verdict: one of :data:`VERDICTS` (of :data:`CHECK_OUTCOMES` for a consistency check).
      note: why: how the measured values met the rule.
      rule: the declared rule, as text ("" for a hand-written claim).
      control: the control or null model the result was compared with ("" if none).
      evidence: where the evidence comes from (``"book run"``, ``"stored paper-scale run"``).
      kind: ``"claim"`` (a paper claim) or ``"consistency"`` (holds by construction; not scored).
      departures: how the experiment behind this verdict differs from the paper's, each a
        ``{"what": ..., "reason": ...}`` dict (``reason`` one of :data:`DEPARTURE_REASONS`; with
        ``"always": True`` for one shown beside a ``reproduced`` verdict too), as
        :func:`eoslib.book.verdicts.grade` formats the declared departures that apply at the
        evidence's scale; empty when none applies or none was declared (a list in the record).
      follows_paper: whether the experiment follows the paper's setup at that scale (declared
        with ``follows_paper=True``, or every declared departure is limited to other scales).
        Empty ``departures`` and ``False``: nothing declared (a record older than the field).
    """

    id: str
    claim: str
    paper: str
    ours: str
    verdict: str
    note: str = ""
    rule: str = ""
    control: str = ""
    evidence: str = ""
    kind: str = "claim"
    departures: tuple[dict[str, Any], ...] = field(default=(), hash=False)
    follows_paper: bool = False

    def __post_init__(self):
        _check_verdict(f"Claim {self.id!r}", self.kind, self.verdict)
        object.__setattr__(self, "departures",
                           _check_departures(f"Claim {self.id!r}", self.departures))
        if not isinstance(self.follows_paper, bool):
            raise ValueError(f"Claim {self.id!r}: follows_paper={self.follows_paper!r} must be "
                             "True or False")
        if self.follows_paper and self.departures:
            raise ValueError(f"Claim {self.id!r}: follows_paper=True with departures "
                             f"{list(self.departures)}: a claim that follows the paper's setup "
                             "has none")


def _check_departures(where: str, departures: Any) -> tuple[dict[str, Any], ...]:
    """``departures`` as a tuple of ``{"what", "reason"}`` dicts (with ``"always": True`` where an
    entry has it), or a ``ValueError`` naming the first entry that is not one (a mapping with
    exactly those keys, and optionally ``"always"``, a bool; a non-empty ``what`` and a
    ``reason`` of :data:`DEPARTURE_REASONS`)."""
    if isinstance(departures, (str, bytes, Mapping)) or not isinstance(departures, Sequence):
        raise ValueError(f"{where}: departures={departures!r} must be a list of "
                         "{'what': ..., 'reason': ...} entries")
    out = []
    for i, entry in enumerate(departures):
        if not isinstance(entry, Mapping) or sorted(set(entry) - {_DEPARTURE_ALWAYS}) != sorted(_DEPARTURE_KEYS):
            raise ValueError(f"{where}: departures[{i}]={entry!r} must have exactly the keys "
                             f"{list(_DEPARTURE_KEYS)} (and optionally {_DEPARTURE_ALWAYS!r})")
        always = entry.get(_DEPARTURE_ALWAYS, False)
        if not isinstance(always, bool):
            raise ValueError(f"{where}: departures[{i}] {_DEPARTURE_ALWAYS}={always!r} must be true "
                             "or false")
        what, reason = entry["what"], entry["reason"]
        if not isinstance(what, str) or not what.strip():
            raise ValueError(f"{where}: departures[{i}] what={what!r} must be a non-empty string")
        if reason not in DEPARTURE_REASONS:
            raise ValueError(f"{where}: departures[{i}] reason={reason!r} is not one of "
                             f"{list(DEPARTURE_REASONS)}")
        out.append({"what": what, "reason": reason, **({_DEPARTURE_ALWAYS: True} if always else {})})
    return tuple(out)


def _check_verdict(where: str, kind: str, verdict: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"{where}: kind={kind!r} is not one of {list(KINDS)}")
    allowed = VERDICTS if kind == "claim" else CHECK_OUTCOMES
    if verdict not in allowed:
        raise ValueError(f"{where}: verdict={verdict!r} is not one of {list(allowed)} "
                         f"(kind {kind!r})")


def claim_from_dict(entry: Mapping[str, Any]) -> Claim:
    """A record's claim entry as a :class:`Claim` (optional keys filled with their defaults)."""
    fields = {**CLAIM_DEFAULTS, **{k: v for k, v in entry.items() if k in Claim.__dataclass_fields__}}
    return Claim(**fields)


def tally(claims: Sequence[Mapping[str, Any] | Claim]) -> tuple[dict[str, int], dict[str, int]]:
    """Counts of the paper claims' verdicts (every one of :data:`VERDICTS`, zeros included) and of
    the consistency checks' outcomes (:data:`CHECK_OUTCOMES`)."""
    verdicts, checks = dict.fromkeys(VERDICTS, 0), dict.fromkeys(CHECK_OUTCOMES, 0)
    for c in claims:
        c = c if isinstance(c, Claim) else claim_from_dict(c)
        (verdicts if c.kind == "claim" else checks)[c.verdict] += 1
    return verdicts, checks


def _jsonable(value: Any) -> Any:
    """Turn numpy / JAX scalars and arrays, tuples and non-finite floats into plain JSON.

    JSON has no infinities: ±inf is stored as the string ``"inf"`` / ``"-inf"`` (a measurement that
    went wrong, e.g. the error of a diverged run, which a rule must still reject when a record is
    graded again), NaN as ``null`` (not measured). :func:`eoslib.book.verdicts.metric_value` reads
    both back.
    """
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "__array__") and not isinstance(value, (str, bytes)):
        arr = np.asarray(value)
        if arr.ndim == 0:
            return _jsonable(arr.item())
        return [_jsonable(v) for v in arr.tolist()]
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store a value of type {type(value).__name__} in a record: {value!r}")


def git_hash(start: Path | None = None) -> str:
    """The git commit of the eoslib checkout (``+dirty`` when it has uncommitted changes).

    Returns ``"unknown"`` outside a git checkout (e.g. an installed wheel).
    """
    where = Path(start) if start is not None else Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        # a copy without .git (e.g. shipped to a GPU machine): the caller may say which commit
        return os.environ.get("EOSLIB_GIT_HASH", "unknown")
    return head + ("+dirty" if dirty else "")


#: The folders whose .py files make up the code that ran, as source_digest reads them.
SOURCE_DIGEST_PATHS = ("src/eoslib", "notebooks")


def digest_of_blobs(blobs: Mapping[str, str]) -> str:
    """The sha256 of ``{path: git blob id}``, one ``"<path> <blob>"`` line per file in path order."""
    text = "".join(f"{path} {blob}\n" for path, blob in sorted(blobs.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def git_blob_id(data: bytes) -> str:
    """The id git gives a file with contents ``data`` (sha1 of ``b"blob <size>\\0" + data``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def source_digest(root: Path | None = None) -> str | None:
    """A digest of the code in the checkout ``root``, as it is on disk now: the git blob id of every
    ``.py`` file under :data:`SOURCE_DIGEST_PATHS`, tracked or not, through :func:`digest_of_blobs`.

    Needs no git, so a copy of the tree without ``.git`` (a GPU machine) gives the digest of the
    commit it was copied from only when nothing in it was changed or added;
    :func:`eoslib.book.store.commit_digest` computes the same from a commit. ``root`` defaults to
    the checkout this eoslib was imported from (``src/eoslib``'s grandparent); ``None`` when eoslib
    is not imported from a checkout (an installed wheel).
    """
    if root is None:
        package = Path(__file__).resolve().parents[1]
        if package.parent.name != "src":
            return None
        root = package.parents[1]
    root = Path(root)
    blobs = {}
    for folder in SOURCE_DIGEST_PATHS:
        for path in sorted((root / folder).rglob("*.py")):
            if "__pycache__" in path.parts or ".ipynb_checkpoints" in path.parts:
                continue
            blobs[path.relative_to(root).as_posix()] = git_blob_id(path.read_bytes())
    return digest_of_blobs(blobs)


def provenance(start_time: float | None = None, **extra: Any) -> dict[str, Any]:
    """Where and how a result was computed: versions, git hash, the digest of the code that ran
    (:func:`source_digest`), device, wall time.

    Args:
      start_time: ``time.time()`` when the computation began; gives ``wall_time_s``.
      **extra: more entries (e.g. ``data_source``), stored as given.
    """
    import jax

    device = jax.devices()[0]
    info = {
        "eoslib_version": __version__,
        "git_hash": git_hash(),
        "source_digest": source_digest(),
        "jax_version": jax.__version__,
        "device": f"{device.platform}:{getattr(device, 'device_kind', '')}".rstrip(":"),
        "x64": bool(jax.config.read("jax_enable_x64")),
        "python": platform.python_version(),
        "host_cpus": os.cpu_count(),
        "timestamp_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if start_time is not None:
        info["wall_time_s"] = round(time.time() - start_time, 3)
    info.update(extra)
    return info


def make_record(
    chapter: str,
    scale: str,
    parameters: Mapping[str, Any],
    claims: Sequence[Claim],
    metrics: Mapping[str, Any],
    provenance: Mapping[str, Any],
) -> dict[str, Any]:
    """Assemble and validate a record (see the module docstring for the schema)."""
    record = {
        "chapter": chapter,
        "scale": scale,
        "parameters": _jsonable(dict(parameters)),
        "claims": [_jsonable(asdict(c)) for c in claims],
        "metrics": _jsonable(dict(metrics)),
        "provenance": _jsonable(dict(provenance)),
    }
    validate_record(record)
    return record


def validate_record(record: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first field of ``record`` that breaks the schema."""
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise ValueError(f"record is missing {missing}; a record has keys {list(RECORD_KEYS)}")
    if record["scale"] not in SCALES:
        raise ValueError(f"record scale={record['scale']!r} is not one of {list(SCALES)}")
    if not record["claims"]:
        raise ValueError(f"record of chapter {record['chapter']!r} has no claims")
    for i, claim in enumerate(record["claims"]):
        absent = [k for k in CLAIM_KEYS if k not in claim]
        if absent:
            raise ValueError(f"claims[{i}] is missing {absent}")
        _check_verdict(f"claims[{i}]", claim.get("kind", "claim"), claim["verdict"])
        for key, default in CLAIM_DEFAULTS.items():
            if isinstance(default, str) and key in claim and not isinstance(claim[key], str):
                raise ValueError(f"claims[{i}] {key}={claim[key]!r} is not a string")
        departures = _check_departures(f"claims[{i}]", claim.get("departures", []))
        follows = claim.get("follows_paper", False)
        if not isinstance(follows, bool):
            raise ValueError(f"claims[{i}] follows_paper={follows!r} is not true or false")
        if follows and departures:
            raise ValueError(f"claims[{i}] follows_paper is true but it lists departures")
    for name, value in record["metrics"].items():
        if value is not None and value not in ("inf", "-inf") and not isinstance(value, (int, float, list)):
            raise ValueError(f"metrics[{name!r}]={value!r} is not a number (or list of numbers, "
                             "or 'inf' / '-inf')")
    for key in ("eoslib_version", "git_hash", "jax_version", "device"):
        if key not in record["provenance"]:
            raise ValueError(f"provenance is missing {key!r}")


def find_repo_root(start: Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: cwd) holding the book's ``_toc.yml``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file():
            return folder
    return None


def records_dir(results_dir: str | os.PathLike | None = None) -> Path:
    """Where records are written: ``results_dir`` if given, else ``$EOSLIB_RECORDS``, else the
    book's ``_build/records`` (found from the working directory), else ``./records``."""
    if results_dir is not None:
        return Path(results_dir)
    if os.environ.get("EOSLIB_RECORDS"):
        return Path(os.environ["EOSLIB_RECORDS"])
    root = find_repo_root()
    return (root / "_build" / "records") if root is not None else Path("records")


def write_record(record: Mapping[str, Any], results_dir: str | os.PathLike | None = None) -> Path:
    """Validate ``record`` and write it to ``<records_dir>/<chapter>.json``; return the path."""
    validate_record(record)
    folder = records_dir(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['chapter']}.json"
    path.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
    return path


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate one record."""
    record = json.loads(Path(path).read_text())
    validate_record(record)
    return record


def read_records(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record in ``folder``, sorted by chapter name (empty if the folder does not exist)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [read_record(p) for p in sorted(folder.glob("*.json"))]
