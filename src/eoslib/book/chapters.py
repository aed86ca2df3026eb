"""The book's chapters: discovery, their parameters, and execution through papermill.

A chapter is a jupytext percent-format file ``notebooks/<name>.py`` with

- a cell tagged ``parameters`` assigning ``scale`` and every experiment setting (``None`` means
  "the scale's default"); a trailing ``# comment`` on an assignment is that parameter's help;
- a ``RANGES = {name: range}`` literal declaring each setting's type and allowed values (syntax in
  :mod:`eoslib.book.scales`), and a ``SCALES = {"smoke": {...}, "book": {...}, "paper": {...}}``
  literal with the defaults (``"long"`` optional: only a chapter that declares it runs at
  ``long`` scale), both passed to :func:`eoslib.book.scales.settings`;
- a final cell that writes the chapter's results record to ``results_dir``.

Both literals are read here without executing the chapter, so :func:`check_parameters` rejects a
value outside its range before papermill starts, with the message the chapter itself would give.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from eoslib.book import scales as scale_settings
from eoslib.book import script
from eoslib.book.results import OPTIONAL_SCALES, REQUIRED_SCALES, find_repo_root

#: Parameters every chapter has that are not experiment settings.
COMMON_PARAMETERS = ("scale", "results_dir")


@dataclass(frozen=True)
class Parameter:
    """One parameter of a chapter: its name, the parameters cell's value (source text), its help
    (the line's trailing comment) and its declared range (``""`` for ``scale`` and ``results_dir``)."""

    name: str
    default: str
    help: str
    allowed: str = ""


@dataclass(frozen=True)
class Chapter:
    """A chapter notebook: its name, title, path, parameters and per-scale defaults."""

    name: str
    title: str
    path: Path
    parameters: tuple[Parameter, ...]
    scales: Mapping[str, Mapping[str, Any]]
    ranges: Mapping[str, str]

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)


def notebooks_dir() -> Path:
    """The chapters' folder: ``$EOSLIB_NOTEBOOKS``, else ``notebooks/`` of the book found from the
    working directory, else the one beside this (editable) package."""
    if os.environ.get("EOSLIB_NOTEBOOKS"):
        return Path(os.environ["EOSLIB_NOTEBOOKS"])
    root = find_repo_root()
    if root is not None:
        return root / "notebooks"
    return Path(__file__).resolve().parents[2] / "notebooks"


def _read_notebook(path: Path):
    try:
        import jupytext
    except ImportError:  # a machine without the Jupyter stack (a GPU machine): the plain reader
        return script.read_percent(path)
    return jupytext.read(path, fmt="py:percent")


def parse_chapter(path: Path) -> Chapter:
    """Read a chapter's title, parameters cell, ``RANGES`` and ``SCALES`` tables (without executing
    it). Every setting must have a range that parses (:class:`eoslib.book.scales.Range`)."""
    nb = _read_notebook(path)
    title = path.stem
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    title = line[2:].strip()
                    break
            break
    parameters: list[Parameter] = []
    scales: dict[str, Any] = {}
    ranges: dict[str, str] = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tree = ast.parse(cell.source)
        if "parameters" in cell.metadata.get("tags", []):
            lines = cell.source.splitlines()
            for node in tree.body:
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                    line = lines[node.lineno - 1]
                    help_text = line.split("#", 1)[1].strip() if "#" in line else ""
                    parameters.append(Parameter(node.targets[0].id,
                                                ast.get_source_segment(cell.source, node.value),
                                                help_text))
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                if node.targets[0].id == "SCALES":
                    scales = ast.literal_eval(node.value)
                elif node.targets[0].id == "RANGES":
                    ranges = ast.literal_eval(node.value)
    if not parameters:
        raise ValueError(f"{path} has no cell tagged 'parameters'")
    names = [p.name for p in parameters]
    missing = [c for c in COMMON_PARAMETERS if c not in names]
    if missing:
        raise ValueError(f"{path}: the parameters cell must assign {missing}")
    if not scales:
        raise ValueError(f"{path}: no SCALES table (it must declare {list(REQUIRED_SCALES)})")
    scale_settings.check_scales(scales, f"{path}: SCALES")
    settable = [n for n in names if n not in COMMON_PARAMETERS]
    if set(ranges) != set(settable):
        raise ValueError(f"{path}: RANGES must declare every setting {settable}; "
                         f"missing {sorted(set(settable) - set(ranges))}, extra {sorted(set(ranges) - set(settable))}")
    for name, text in ranges.items():
        try:
            scale_settings.Range.parse(text)
        except ValueError as err:
            raise ValueError(f"{path}: RANGES[{name!r}]: {err}") from None
    parameters = [Parameter(p.name, p.default, p.help, ranges.get(p.name, "")) for p in parameters]
    return Chapter(path.stem, title, path, tuple(parameters), scales, ranges)


def discover(folder: Path | None = None) -> dict[str, Chapter]:
    """Every chapter in ``folder`` (default :func:`notebooks_dir`), by name."""
    folder = Path(folder) if folder is not None else notebooks_dir()
    if not folder.is_dir():
        raise FileNotFoundError(f"no chapters folder at {folder} (set EOSLIB_NOTEBOOKS or run "
                                "from inside the eos-book checkout)")
    return {p.stem: parse_chapter(p) for p in sorted(folder.glob("*.py"))}


def get_chapter(name: str, folder: Path | None = None) -> Chapter:
    chapters = discover(folder)
    if name not in chapters:
        raise ValueError(f"chapter {name!r} does not exist; chapters: {sorted(chapters)}")
    return chapters[name]


def check_parameters(chapter: Chapter, scale: str, parameters: Mapping[str, Any]) -> None:
    """Reject an unknown scale or parameter name, or a value outside its declared range, naming
    what is allowed: the check :func:`eoslib.book.scales.settings` makes inside the chapter, made
    before it runs (a range may compare with another setting, resolved at ``scale``).

    Raises:
      ValueError: one line naming the parameter, the value and what is allowed.
    """
    if scale not in chapter.scales:
        exc = scale_settings.NoSuchScale if scale in OPTIONAL_SCALES else ValueError
        raise exc(scale_settings.undeclared_scale_message(chapter.name, scale, list(chapter.scales)))
    settable = [n for n in chapter.parameter_names if n not in COMMON_PARAMETERS]
    for name in parameters:
        if name in COMMON_PARAMETERS:
            raise ValueError(f"parameter {name!r} is set by --{name.replace('_dir', '')} "
                             f"{'(--out)' if name == 'results_dir' else ''}, not -p")
        if name not in settable:
            raise ValueError(f"chapter {chapter.name} has no parameter {name!r}; its parameters "
                             f"are {settable}")
    values = scale_settings.resolve(chapter.scales, scale, parameters, chapter=chapter.name)
    scale_settings.check(chapter.ranges, values)


def to_notebook(chapter: Chapter):
    """The chapter as an nbformat notebook with the ``python3`` kernel (papermill's input)."""
    nb = _read_notebook(chapter.path)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.setdefault("language_info", {"name": "python"})
    return nb


def execute(
    chapter: Chapter,
    out_dir: Path,
    *,
    scale: str,
    parameters: Mapping[str, Any],
    prepare_only: bool = False,
    progress_bar: bool = True,
    kernel: bool = True,
) -> Path:
    """Run (or with ``prepare_only`` just parameterise) ``chapter`` through papermill.

    Writes ``out_dir/<name>.ipynb``; the chapter itself writes ``out_dir/<name>.json``.
    Returns the notebook's path. With ``kernel=False`` the chapter runs as a plain Python program
    (:func:`eoslib.book.script.execute`: no Jupyter needed, no notebook written) and the record's
    path is returned instead.
    """
    check_parameters(chapter, scale, parameters)
    if not kernel:
        if prepare_only:
            raise ValueError("prepare_only=True needs kernel=True (papermill writes the notebook)")
        script.execute(chapter.path, out_dir, scale=scale, parameters=parameters)
        return Path(out_dir).resolve() / f"{chapter.name}.json"
    import papermill

    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"{chapter.name}.ipynb"
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = kernel_pythonpath(saved)
    try:
        papermill.execute_notebook(
            to_notebook(chapter), str(output),
            parameters={"scale": scale, "results_dir": str(out_dir), **parameters},
            prepare_only=prepare_only, kernel_name="python3", language="python",
            progress_bar=progress_bar, cwd=str(chapter.path.parent),
        )
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    return output


def kernel_pythonpath(current: str | None) -> str:
    """The ``PYTHONPATH`` a chapter's kernel gets: the checkout's ``src`` this eoslib was imported
    from first (when it was; an installed eoslib adds nothing), then ``current`` with its relative
    entries made absolute (from the working directory).

    The kernel starts in the chapter's folder, where a relative entry (``PYTHONPATH=src``) no
    longer names the checkout it named here, and an editable install of another checkout would be
    imported instead: the chapter would run other code than this process checked (and record that
    checkout's commit).
    """
    src = Path(__file__).resolve().parents[2]  # src/eoslib/book/chapters.py → src
    first = [str(src)] if src.name == "src" else []
    rest = [str(Path(p).resolve()) for p in (current or "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys([*first, *rest]))
