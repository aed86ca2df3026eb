"""``python -m eoslib``: list the chapters, rerun one with new parameters, prepare them for nbval.

    python -m eoslib list
    python -m eoslib run dln-rpe --scale smoke -p theta0 "[-0.2, 5.0]" --out /tmp/x
    python -m eoslib prepare --scale smoke --out _build/nbval
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from eoslib.book import chapters
from eoslib.book.results import SCALES, read_record


def parse_value(text: str) -> Any:
    """A ``-p`` value: a Python/JSON literal when it parses as one (``[-0.2, 5.0]``, ``0.01``,
    ``true``/``null`` too), else the string itself (``nan`` and ``inf`` stay strings: the
    parameter's declared range decides whether they are allowed)."""
    json_words = {"true": True, "false": False, "null": None}
    if text in json_words:
        return json_words[text]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def check_out_dir(out: Path) -> None:
    """``--out`` must be a folder, or a path where one can be created (checked before running).

    Raises:
      ValueError: one line naming ``--out``, the path and what is wrong with it.
    """
    existing = next((p for p in (out, *out.parents) if p.exists()), Path("."))  # nearest that exists
    if not existing.is_dir():
        what = "is an existing file" if existing == out else f"cannot be created: {existing} is a file"
        raise ValueError(f"--out {out} {what}, not a folder; allowed: a folder (created if missing)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: {existing} is not writable; allowed: a folder you may write to")


def _cmd_list(args) -> int:
    for chapter in chapters.discover().values():
        rows = [(p.name, *[repr(chapter.scales[s].get(p.name, p.default)) for s in SCALES], p.allowed, p.help)
                for p in chapter.parameters if p.name not in chapters.COMMON_PARAMETERS]
        header = ("parameter", *SCALES, "allowed", "help")
        widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header) - 1)]
        print(f"{chapter.name}: {chapter.title}")
        for row in [header, *rows]:
            print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
        print(f"  (scale: one of {list(chapter.scales)}; results written with --out DIR)\n")
    return 0


def _cmd_run(args) -> int:
    chapter = chapters.get_chapter(args.chapter)
    params = {name: parse_value(value) for name, value in args.parameter}
    out = Path(args.out or Path("_build") / "runs" / chapter.name)
    check_out_dir(out)
    chapters.check_parameters(chapter, args.scale, params)  # before papermill starts
    print(f"Running {chapter.name} at scale={args.scale} with {params or 'the scale defaults'}",
          file=sys.stderr)
    import papermill

    try:
        notebook = chapters.execute(chapter, out, scale=args.scale, parameters=params)
    except papermill.PapermillExecutionError as err:
        print(f"error: chapter {chapter.name} failed in cell {err.exec_count}: "
              f"{err.ename}: {err.evalue}\n(the partly executed notebook is in {out})",
              file=sys.stderr)
        return 1
    record_path = Path(out) / f"{chapter.name}.json"
    if not record_path.is_file():
        print(f"error: {chapter.name} ran but wrote no record at {record_path}", file=sys.stderr)
        return 1
    record = read_record(record_path)
    print(f"notebook: {notebook}\nrecord:   {record_path}")
    for claim in record["claims"]:
        print(f"  [{claim['verdict']}] {claim['id']}: paper {claim['paper']} | ours {claim['ours']}")
    print("metrics: " + json.dumps(record["metrics"]))
    return 0


def _cmd_prepare(args) -> int:
    names = args.chapters or list(chapters.discover())
    check_out_dir(Path(args.out))
    for name in names:
        chapter = chapters.get_chapter(name)
        path = chapters.execute(chapter, Path(args.out), scale=args.scale, parameters={},
                                prepare_only=True, progress_bar=False)
        print(f"prepared {path} (scale={args.scale})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eoslib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="the chapters with their parameters and per-scale defaults")

    run = sub.add_parser("run", help="execute a chapter through papermill")
    run.add_argument("chapter", help="a chapter name, as `list` shows")
    run.add_argument("--scale", default="book", choices=SCALES,
                     help="smoke: seconds (CI); book: minutes on a CPU; paper: the paper's settings")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                     metavar=("NAME", "VALUE"), help="set a parameter (Python/JSON literal)")
    run.add_argument("--out", help="folder for CHAPTER.ipynb and CHAPTER.json "
                                   "(default _build/runs/CHAPTER)")

    prep = sub.add_parser("prepare", help="parameterise chapters without running them (for nbval)")
    prep.add_argument("chapters", nargs="*", help="chapter names (default: all)")
    prep.add_argument("--scale", default="smoke", choices=SCALES)
    prep.add_argument("--out", required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"list": _cmd_list, "run": _cmd_run, "prepare": _cmd_prepare}[args.command]
    try:
        return handler(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
