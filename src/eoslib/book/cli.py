"""``python -m eoslib``: list the chapters, rerun one with new parameters, prepare them for nbval.

    python -m eoslib list
    python -m eoslib run dln-rpe --scale smoke -p theta0 "[-0.2, 5.0]" -p eta_fractions "[0.1, 0.95, 1.1, 1.3]" --out /tmp/x
    python -m eoslib run eos-intro --scale paper --no-kernel --out DIR   # no Jupyter (a GPU machine)
    python -m eoslib prepare --scale smoke --out _build/nbval
    python -m eoslib sweep dln-rpe --scale smoke -p steps "[40, 60]" --workers 2 --out /tmp/sweep
    python -m eoslib store eos-intro          # run at paper scale (a GPU) and store the results
    python -m eoslib store weight-decay --scale long   # run at long scale (≤ 2 h on a CPU), store it
    python -m eoslib store eos-intro --source DIR   # store a run brought back from a GPU machine
    python -m eoslib store --check            # verify book/results/manifest.json
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from eoslib.book import chapters, store, sweep
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
        shown = [s for s in SCALES if s in chapter.scales]  # long only where the chapter declares it
        rows = [(p.name, *[repr(chapter.scales[s].get(p.name, p.default)) for s in shown], p.allowed, p.help)
                for p in chapter.parameters if p.name not in chapters.COMMON_PARAMETERS]
        header = ("parameter", *shown, "allowed", "help")
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
    if args.no_kernel:
        try:
            notebook = chapters.execute(chapter, out, scale=args.scale, parameters=params,
                                        kernel=False)
        except RuntimeError as err:
            print(f"error: {err}\n(what it wrote is in {out})", file=sys.stderr)
            return 1
        return _report(chapter, out, "(none: --no-kernel)")
    import papermill

    try:
        notebook = chapters.execute(chapter, out, scale=args.scale, parameters=params)
    except papermill.PapermillExecutionError as err:
        print(f"error: chapter {chapter.name} failed in cell {err.exec_count}: "
              f"{err.ename}: {err.evalue}\n(the partly executed notebook is in {out})",
              file=sys.stderr)
        return 1
    return _report(chapter, out, notebook)


def _report(chapter, out: Path, notebook) -> int:
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


def _cmd_sweep(args) -> int:
    values = {name: parse_value(value) for name, value in args.parameter}
    fixed = {name: parse_value(value) for name, value in args.fixed}
    slurm = {}
    for item in args.slurm:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--slurm {item!r} must be KEY=VALUE (e.g. partition=gpu)")
        slurm[key] = parse_value(value)
    out = Path(args.out or Path("_build") / "sweeps" / args.chapter)
    rows = sweep.sweep(args.chapter, args.scale, values, out, executor=args.executor,
                       workers=args.workers, slurm=slurm, fixed=fixed)
    print(sweep.summary_table(rows))
    print(f"summary: {out / 'summary.json'}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


def _cmd_store(args) -> int:
    if args.check:
        problems = store.check()
        for problem in problems:
            print(f"store: {problem}", file=sys.stderr)
        stored = store.runs()
        print(f"store {store.store_dir()}: {len(stored)} run(s), "
              f"{'OK' if not problems else f'{len(problems)} problem(s)'}")
        return 1 if problems else 0
    if not args.chapter:
        raise ValueError("store needs a CHAPTER (or --check)")
    chapter = chapters.get_chapter(args.chapter)
    params = {name: parse_value(value) for name, value in args.parameter}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(args.source) if args.source else Path(tmp)
        if not args.source:
            # refuse before an hours-long run what the store would refuse after it
            chapters.check_parameters(chapter, args.scale, params)
            commit = store.check_storable_checkout()
            if args.keep:
                source = Path(args.keep)
                check_out_dir(source)
            print(f"Running {chapter.name} at scale={args.scale} to store it"
                  + (f" (its output kept in {source})" if args.keep else ""), file=sys.stderr)
            chapters.execute(chapter, source, scale=args.scale, parameters=params,
                             kernel=not args.no_kernel)
        run = store.add(chapter.name, source, commit=None if args.source else commit)
    print(run.describe())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eoslib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="the chapters with their parameters and per-scale defaults")

    run = sub.add_parser("run", help="execute a chapter through papermill",
                         description="Execute a chapter through papermill. Datasets are read from "
                                     "the folders in $EOSLIB_DATA (the Makefile sets it to "
                                     "../shared/data) or else downloaded: offline, set EOSLIB_DATA "
                                     "to the folder holding them.")
    run.add_argument("chapter", help="a chapter name, as `list` shows")
    run.add_argument("--scale", default="book", choices=SCALES,
                     help="smoke: seconds (CI); book: minutes on a CPU; long: the paper's "
                          "architecture at the largest size a CPU finishes in about two hours "
                          "(only chapters that declare it); paper: the paper's settings")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                     metavar=("NAME", "VALUE"), help="set a parameter (Python/JSON literal)")
    run.add_argument("--out", help="folder for CHAPTER.ipynb and CHAPTER.json "
                                   "(default _build/runs/CHAPTER)")
    run.add_argument("--no-kernel", action="store_true",
                     help="run the chapter as a plain Python program (no Jupyter, papermill or "
                          "jupytext needed; no .ipynb written): what a GPU machine runs")

    prep = sub.add_parser("prepare", help="parameterise chapters without running them (for nbval)")
    prep.add_argument("chapters", nargs="*", help="chapter names (default: all)")
    prep.add_argument("--scale", default="smoke", choices=SCALES)
    prep.add_argument("--out", required=True)
    swp = sub.add_parser("sweep", help="run a chapter over a grid of parameters (submitit)")
    swp.add_argument("chapter")
    swp.add_argument("--scale", default="smoke", choices=SCALES)
    swp.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUES"),
                     help="a swept parameter and its list of values, e.g. -p eta \"[0.01, 0.02]\"")
    swp.add_argument("-f", "--fixed", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="a parameter held at one value for every point")
    swp.add_argument("--executor", default="local", choices=sweep.EXECUTORS)
    swp.add_argument("--workers", type=int, default=2, help="points running at once")
    swp.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                     help="a submitit SlurmExecutor parameter, e.g. partition=gpu, gpus_per_node=1")
    swp.add_argument("--out", help="folder of the points and summary.json (default _build/sweeps/CHAPTER)")

    sto = sub.add_parser("store", help="run a chapter at paper (or long) scale from a clean commit "
                                       "and keep its results in book/results")
    sto.add_argument("chapter", nargs="?")
    sto.add_argument("--check", action="store_true", help="verify the store's manifest and checksums")
    sto.add_argument("--scale", default="paper", choices=SCALES,
                     help="the scale to run at (default paper; long for a chapter's CPU long run)")
    sto.add_argument("--keep", metavar="DIR",
                     help="run into this folder (kept afterwards: the executed notebook, the record "
                          "and traces) instead of a temporary one")
    sto.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    sto.add_argument("--source", help="store this already executed --out folder instead of running "
                                      "(e.g. a paper-scale run brought back from a GPU machine)")
    sto.add_argument("--no-kernel", action="store_true",
                     help="run the chapter as a plain Python program (see run --no-kernel)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"list": _cmd_list, "run": _cmd_run, "prepare": _cmd_prepare, "sweep": _cmd_sweep,
               "store": _cmd_store}[args.command]
    try:
        return handler(args)
    except (ValueError, FileNotFoundError) as err:  # StoreError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2
