"""Checkpoints for runs longer than a session: a ``long`` (or ``paper``) run that is stopped resumes
where it stopped instead of starting over.

Two tools, both keyed by the chapter, what is computed (a name and its parameters) and the code
that computes it, so a checkpoint is never resumed by other code or for other settings::

    from eoslib.book.checkpoint import Checkpoints

    ckpt = Checkpoints("weight-decay", P.as_dict())          # one per chapter run
    # a whole finished sub-experiment, computed once (a dict, arrays, a TrainResult, ...)
    toy = ckpt.cached("toy", lambda: simulate_toy(P))
    # a training run in pieces of `every` steps, each piece saved before the next begins
    result = ckpt.train("mlp-gamma-0.02", lambda n, resume: train.run(
        objective, make_optimizer, None if resume else params, (x, y),
        dataclasses.replace(config, steps=n), key=key, hparams=hp, resume=resume,
        progress=False), steps=P.steps, every=2000)

``train`` runs ``run(every, None)``, then ``run(every, previous)`` until ``steps`` steps are done
(the last piece shorter), saving the :class:`eoslib.engine.train.TrainResult` after each piece; a
rerun loads the last saved piece and continues from its state (``train.run(resume=...)`` continues a
run exactly: its history, evaluations and kept states are the resumed run's followed by the new
piece's). A run whose every member stopped (``stop_when``) or diverged is finished. ``every`` must be
a multiple of the run's ``probe_every`` and ``eval_every``, as any ``steps`` of
:class:`~eoslib.engine.train.TrainConfig` must.

**Where and under what key.** Files go to ``$EOSLIB_CHECKPOINTS/<chapter>/``, else
``<book>/_build/checkpoints/<chapter>/`` (``_build`` is never committed), named
``<name>-<key>.pkl`` where ``key`` is the first 16 hex digits of the sha256 of the chapter, the name,
the parameters (as JSON) and the digest of the code on disk
(:func:`eoslib.book.results.source_digest`: every ``.py`` under ``src/eoslib`` and ``notebooks``).
Changing a setting, the chapter or eoslib therefore starts afresh: a stored run must come from one
clean commit (:mod:`eoslib.book.store`), so commit *before* starting a long run and do not change
the checkout until it is stored. The files are Python pickles written by this module (read them
only from a checkout you trust: your own); a file is written to a temporary name and renamed, so a
run killed while saving leaves the previous checkpoint intact. :meth:`Checkpoints.clear` removes a
chapter's files once its run is stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from eoslib.book.results import _jsonable, find_repo_root, git_hash, source_digest

FORMAT = 1


def checkpoints_dir(root: str | os.PathLike | None = None) -> Path:
    """Where checkpoints go: ``root`` if given, else ``$EOSLIB_CHECKPOINTS``, else the book's
    ``_build/checkpoints`` (found from the working directory), else ``./_build/checkpoints``."""
    if root is not None:
        return Path(root)
    if os.environ.get("EOSLIB_CHECKPOINTS"):
        return Path(os.environ["EOSLIB_CHECKPOINTS"])
    repo = find_repo_root()
    return (repo if repo is not None else Path(".")) / "_build" / "checkpoints"


def code_id() -> str:
    """The code a checkpoint was computed by: the source digest of this checkout, else its git
    hash (an installed eoslib)."""
    return source_digest() or git_hash()


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")
    if not slug:
        raise ValueError(f"checkpoint name {name!r} has no letters or digits")
    return slug


def _to_host(result: Any) -> Any:
    """A TrainResult (or any value) with its arrays copied to NumPy, PRNG keys as their data."""
    import jax

    def host(leaf):
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return _Key(np.asarray(jax.random.key_data(leaf)))
        return np.asarray(leaf) if isinstance(leaf, jax.Array) else leaf

    return jax.tree.map(host, result)


def _from_host(value: Any) -> Any:
    import jax

    def device(leaf):
        return jax.random.wrap_key_data(leaf.data) if isinstance(leaf, _Key) else leaf

    return jax.tree.map(device, value, is_leaf=lambda x: isinstance(x, _Key))


class _Key:
    """A PRNG key's data, pickled in place of the key (typed keys do not pickle)."""

    def __init__(self, data: np.ndarray):
        self.data = data


class Checkpoints:
    """A chapter run's checkpoints (see the module doc).

    Args:
      chapter: the chapter's name.
      parameters: the run's resolved settings (``P.as_dict()``); part of every key.
      root: the checkpoints folder (default :func:`checkpoints_dir`).
      code: what identifies the code (default :func:`code_id`); part of every key.
      log: where progress lines go (default ``print``; ``None`` for silence).
      enabled: ``False`` saves and loads nothing: :meth:`cached` computes, :meth:`train` runs
        ``run(steps, None)`` in one piece. A chapter passes ``scale in ("long", "paper")``, so
        its short scales run straight through with the same calls.
    """

    def __init__(self, chapter: str, parameters: Mapping[str, Any], *,
                 root: str | os.PathLike | None = None, code: str | None = None,
                 log: Callable[[str], Any] | None = print, enabled: bool = True):
        self.enabled = bool(enabled)
        self.chapter = chapter
        self.parameters = _jsonable(dict(parameters))
        self.folder = checkpoints_dir(root) / _slug(chapter)
        self.code = code if code is not None else code_id()
        self.log = log or (lambda line: None)

    def key(self, name: str) -> str:
        """The 16-hex-digit key of ``name`` under this chapter, parameters and code."""
        text = json.dumps({"chapter": self.chapter, "name": name, "parameters": self.parameters,
                           "code": self.code}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def path(self, name: str) -> Path:
        """The checkpoint file of ``name``."""
        return self.folder / f"{_slug(name)}-{self.key(name)}.pkl"

    def _save(self, name: str, payload: dict[str, Any]) -> None:
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            pickle.dump({"format": FORMAT, "name": name, "saved_utc":
                         time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **payload}, f)
        os.replace(tmp, path)

    def _load(self, name: str) -> dict[str, Any] | None:
        path = self.path(name)
        if not path.is_file():
            return None
        with open(path, "rb") as f:
            payload = pickle.load(f)
        if payload.get("format") != FORMAT or payload.get("name") != name:
            raise ValueError(f"{path} is not a format-{FORMAT} checkpoint of {name!r}; delete it")
        return payload

    def cached(self, name: str, compute: Callable[[], Any]) -> Any:
        """``compute()``'s value, computed once: saved when it returns, loaded on a rerun (a whole
        finished sub-experiment, e.g. one member of a grid)."""
        if not self.enabled:
            return compute()
        payload = self._load(name)
        if payload is not None:
            self.log(f"checkpoint: {self.chapter}/{name} loaded from {self.path(name)} "
                     f"(saved {payload['saved_utc']})")
            return _from_host(payload["value"])
        value = compute()
        self._save(name, {"value": _to_host(value)})
        return value

    def train(self, name: str, run: Callable[[int, Any], Any], *, steps: int, every: int) -> Any:
        """A training run of ``steps`` steps made in pieces of ``every``, saved after each piece and
        resumed from the last saved one on a rerun.

        Args:
          name: the run's name in this chapter (one file per name).
          run: ``run(n, resume)`` returns :func:`eoslib.engine.train.run`'s result for ``n`` more
            steps, from the start when ``resume`` is ``None``, else continuing ``resume``.
          steps: the run's steps in total.
          every: steps per piece (a multiple of the run's ``probe_every`` and ``eval_every``).

        Returns:
          The whole run's :class:`~eoslib.engine.train.TrainResult`, as one uninterrupted run
          would have returned it.
        """
        if steps < 1 or every < 1:
            raise ValueError(f"steps={steps} and every={every} must be >= 1")
        if not self.enabled:
            return run(steps, None)
        payload = self._load(name)
        result, done, finished = None, 0, False
        if payload is not None:
            result, done, finished = _from_host(payload["result"]), payload["done"], payload["finished"]
            self.log(f"checkpoint: {self.chapter}/{name} resumed at step {done} of {steps} "
                     f"from {self.path(name)} (saved {payload['saved_utc']})")
        while not finished and done < steps:
            n = min(every, steps - done)
            before = _length(result)
            started = time.time()
            result = run(n, result)
            ran = _length(result) - before
            done += n
            finished = ran < n or done >= steps or _all_ended(result)
            self._save(name, {"result": _to_host(result), "done": done, "finished": finished})
            self.log(f"checkpoint: {self.chapter}/{name} step {done} of {steps} saved "
                     f"({time.time() - started:.0f} s for {n} steps)")
        return result

    def clear(self) -> None:
        """Remove this chapter's checkpoints (every name, parameters and code)."""
        if self.folder.is_dir():
            shutil.rmtree(self.folder)


def piece_steps(total: int, unit: int, most: int) -> int:
    """Steps per saved piece (``every`` of :meth:`Checkpoints.train`) of a ``total``-step run: all
    of it when ``total ≤ most``, else equal pieces of about ``most`` steps or fewer, each a multiple
    of ``unit`` (the run's probe or evaluation spacing, which every piece must respect) and at least
    one ``unit``. The last piece may be shorter."""
    for name, value in (("total", total), ("unit", unit), ("most", most)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer")
    if total <= most:
        return int(total)
    pieces = -(-total // most)
    return int(-(-total // (pieces * unit)) * unit)


def _all_ended(result: Any) -> bool:
    """Whether every member of a TrainResult has stopped (``stop_when``) or diverged."""
    ended = (np.asarray(result.stopped_at) >= 0) | (np.asarray(result.history.diverged_at) >= 0)
    return bool(np.all(ended))


def _length(result: Any) -> int:
    """Steps a result's history holds (0 for ``None``)."""
    if result is None:
        return 0
    return int(np.shape(result.history.step)[-1])
