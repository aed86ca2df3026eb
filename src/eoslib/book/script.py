"""Run a chapter as a plain Python program: no Jupyter kernel, papermill, jupytext or IPython.

A GPU machine may have JAX, Equinox, Optax and matplotlib but none of the Jupyter stack. A chapter is
a jupytext percent-format file, so it can still run there::

    PYTHONPATH=src python3 -m eoslib run eos-intro --scale paper --no-kernel --out $OUT/eos-intro

:func:`read_percent` splits the file into cells (what jupytext would read: code cells with their
tags, markdown cells skipped), and :func:`execute` runs the code cells one after another in one
namespace, in the chapter's folder, with the given parameters assigned right after the cell tagged
``parameters`` (as papermill injects them). Figures are drawn with matplotlib's ``Agg`` backend and
closed after each cell; a cell's ``from IPython.display import`` reads :func:`display` and
:class:`Markdown` of this module instead, which print (a Markdown object as its text), so the run's
log reads like the notebook and IPython need not be installed. The chapter writes its record and traces into ``results_dir``
exactly as under papermill; nothing else differs, so the record's verdicts and metrics are the ones
the notebook would compute. There is no executed notebook (``.ipynb``) from such a run.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

_HEADER = re.compile(r"^# %%(?P<rest>.*)$")
_TAGS = re.compile(r"tags=(\[[^\]]*\])")


@dataclass
class Cell:
    """One cell of a percent-format file: ``cell_type`` (``"code"`` or ``"markdown"``), its source
    text, and ``metadata`` (only ``tags`` is read)."""

    cell_type: str
    source: str
    metadata: dict = field(default_factory=dict)


@dataclass
class Notebook:
    """The cells of a percent-format file, in order."""

    cells: list[Cell]


def read_percent(path: str | os.PathLike) -> Notebook:
    """Split a jupytext percent-format file into cells, without jupytext.

    Lines before the first ``# %%`` (the YAML header) are skipped. A header ``# %% [markdown]`` (or
    ``[md]``, ``[raw]``) opens a non-code cell; any other ``# %%`` opens a code cell, whose
    ``tags=[...]`` (JSON) become ``metadata["tags"]``. A cell's source is its lines up to the next
    header, with blank lines at either end removed (as jupytext reads it).
    """
    cells: list[Cell] = []
    current: tuple[str, dict, list[str]] | None = None

    def close() -> None:
        if current is not None:
            kind, meta, lines = current
            while lines and not lines[-1].strip():
                lines.pop()
            while lines and not lines[0].strip():
                lines.pop(0)
            cells.append(Cell(kind, "\n".join(lines), meta))

    for line in Path(path).read_text().splitlines():
        match = _HEADER.match(line)
        if match:
            close()
            rest = match.group("rest")
            kind = "markdown" if re.match(r"\s*\[(markdown|md|raw)\]", rest) else "code"
            meta: dict[str, Any] = {}
            tags = _TAGS.search(rest)
            if tags:
                meta["tags"] = json.loads(tags.group(1))
            current = (kind, meta, [])
        elif current is not None:
            current[2].append(line)
    close()
    return Notebook(cells)


class Markdown:
    """Stand-in for ``IPython.display.Markdown`` where IPython is not installed: keeps the text."""

    def __init__(self, data: str = "") -> None:
        self.data = data

    def __repr__(self) -> str:
        return self.data


def display(*objects: Any, **_: Any) -> None:
    """Stand-in for ``IPython.display.display``: prints each object (a Markdown object's text)."""
    for obj in objects:
        data = getattr(obj, "data", None)
        print(data if isinstance(data, str) else obj)


_IPYTHON_IMPORT = re.compile(r"^(\s*)from IPython\.display import ", re.MULTILINE)


def execute(path: str | os.PathLike, out_dir: str | os.PathLike, *, scale: str,
            parameters: Mapping[str, Any], log=sys.stderr) -> Path:
    """Run the chapter ``path`` as a program at ``scale`` with ``parameters``; return ``out_dir``.

    ``scale``, ``results_dir`` (= ``out_dir``) and every parameter are assigned right after the cell
    tagged ``parameters``. Each cell's start and duration go to ``log``.

    Raises:
      ValueError: the file has no cell tagged ``parameters``.
      RuntimeError: a cell raised; the message names the cell and the error (the original
        exception is chained).
    """
    path = Path(path).resolve()
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    cells = [c for c in read_percent(path).cells if c.cell_type == "code"]
    if not any("parameters" in c.metadata.get("tags", []) for c in cells):
        raise ValueError(f"{path} has no cell tagged 'parameters'")
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    injected = {"scale": scale, "results_dir": str(out_dir), **dict(parameters)}
    namespace: dict[str, Any] = {"__name__": "__main__", "__file__": str(path)}
    previous = Path.cwd()
    os.chdir(path.parent)
    start = time.time()
    try:
        for i, cell in enumerate(cells, 1):
            t0 = time.time()
            source = _IPYTHON_IMPORT.sub(r"\1from eoslib.book.script import ", cell.source)
            code = compile(source, f"{path.name}[cell {i}]", "exec")
            try:
                exec(code, namespace)  # noqa: S102 (the chapter is this repository's own code)
            except Exception as err:
                raise RuntimeError(f"{path.name}: code cell {i} of {len(cells)} failed: "
                                   f"{type(err).__name__}: {err}") from err
            if "parameters" in cell.metadata.get("tags", []):
                namespace.update(injected)
            plt.close("all")
            print(f"[{time.time() - start:7.1f} s] cell {i}/{len(cells)} done in "
                  f"{time.time() - t0:.1f} s", file=log, flush=True)
    finally:
        os.chdir(previous)
    return out_dir
