"""Where a chapter's time goes: compilation, compiled execution and Python, per cell.

    python benchmarks/profile_chapter.py weight-decay --scale book -p steps 300 [--cprofile]

Runs the chapter as a plain program (:func:`eoslib.book.script.execute`'s cell loop, no Jupyter)
with JAX's monitoring listeners counting every compilation: tracing to a jaxpr, lowering to MLIR
and XLA's backend compile, with their seconds and the names of the functions compiled. Per cell it
prints the wall time, the compile seconds (the three stages summed) and the number of backend
compiles; the rest of a cell is compiled execution plus Python (``--cprofile`` writes a profile of
the whole run, whose Python-only time is its ``tottime`` outside JAX's dispatch). The totals go to
``$OUT`` or ``benchmarks/results/profile-<chapter>-<scale>.json`` (with the load average before
and after: a run on a shared machine is not a reference).
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import json
import os
import sys
import time
from pathlib import Path

EVENTS = {"/jax/core/compile/jaxpr_trace_duration": "trace",
          "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
          "/jax/core/compile/backend_compile_duration": "backend"}


class CompileCounter:
    """Counts and times JAX's compilation stages (a process-wide listener; ``reset`` to zero)."""

    def __init__(self):
        import jax

        self.reset()
        jax.monitoring.register_event_duration_secs_listener(self._on)

    def reset(self):
        self.seconds = collections.Counter()
        self.counts = collections.Counter()
        self.by_name = collections.Counter()  # backend compile seconds per function name
        self.names = collections.Counter()  # backend compiles per function name

    def _on(self, event, duration, **kwargs):
        stage = EVENTS.get(event)
        if stage is None:
            return
        self.seconds[stage] += duration
        self.counts[stage] += 1
        if stage == "backend":
            name = kwargs.get("fun_name", "?")
            self.by_name[name] += duration
            self.names[name] += 1

    @property
    def total(self) -> float:
        return float(sum(self.seconds.values()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapter")
    parser.add_argument("--scale", default="book")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"))
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--label", default="")
    parser.add_argument("--top", type=int, default=12, help="functions listed by compile time")
    args = parser.parse_args(argv)

    from eoslib.book import chapters, script
    from eoslib.book.cli import parse_value

    chapter = chapters.get_chapter(args.chapter)
    params = {k: parse_value(v) for k, v in args.parameter}
    chapters.check_parameters(chapter, args.scale, params)
    load_before = os.getloadavg()
    counter = CompileCounter()
    out_dir = Path(os.environ.get("OUT") or Path(__file__).parent / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = f"{chapter.name}-{args.scale}" + (f"-{args.label}" if args.label else "")

    cells = [c for c in script.read_percent(chapter.path).cells if c.cell_type == "code"]
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = out_dir / f"run-{tag}"
    injected = {"scale": args.scale, "results_dir": str(run_dir.resolve()), **params}
    namespace = {"__name__": "__main__", "__file__": str(chapter.path)}
    previous = Path.cwd()
    os.chdir(chapter.path.parent)
    rows = []
    profiler = cProfile.Profile() if args.cprofile else None
    start = time.perf_counter()
    try:
        for i, cell in enumerate(cells, 1):
            before = (counter.total, counter.counts["backend"])
            t0 = time.perf_counter()
            source = script._IPYTHON_IMPORT.sub(r"\1from eoslib.book.script import ", cell.source)
            code = compile(source, f"{chapter.path.name}[cell {i}]", "exec")
            if profiler is not None:
                profiler.enable()
            error = None
            try:
                exec(code, namespace)  # noqa: S102
            except Exception as err:  # a truncated run may break a later cell: keep what was measured
                error = f"{type(err).__name__}: {err}"[:300]
            if profiler is not None:
                profiler.disable()
            if "parameters" in cell.metadata.get("tags", []):
                namespace.update(injected)
            plt.close("all")
            wall = time.perf_counter() - t0
            compile_s = counter.total - before[0]
            compiles = counter.counts["backend"] - before[1]
            first = next((ln for ln in cell.source.splitlines() if ln.strip()
                          and not ln.startswith("#")), "")[:60]
            rows.append({"cell": i, "wall_s": wall, "compile_s": compile_s, "compiles": compiles,
                         "first_line": first, **({"error": error} if error else {})})
            print(f"[{time.perf_counter() - start:7.1f} s] cell {i:2d}: {wall:7.1f} s, compile "
                  f"{compile_s:6.1f} s in {compiles:3d} compiles | {first}", file=sys.stderr,
                  flush=True)
            if error:
                print(f"  stopped: {error}", file=sys.stderr)
                break
    finally:
        os.chdir(previous)
    total = time.perf_counter() - start
    payload = {
        "chapter": chapter.name, "scale": args.scale, "parameters": params,
        "total_s": total, "compile_s": counter.total,
        "compile_stages_s": dict(counter.seconds), "compile_stage_counts": dict(counter.counts),
        "top_compiles": [{"name": n, "seconds": s, "count": counter.names[n]}
                         for n, s in counter.by_name.most_common(args.top)],
        "cells": rows, "load_before": load_before, "load_after": os.getloadavg(),
    }
    if profiler is not None:
        prof_path = out_dir / f"profile-{tag}.prof"
        profiler.dump_stats(str(prof_path))
        payload["cprofile"] = str(prof_path)
    path = out_dir / f"profile-{tag}.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    print(f"total {total:.1f} s, compile {counter.total:.1f} s "
          f"({counter.counts['backend']} backend compiles); load {load_before} → "
          f"{payload['load_after']}", file=sys.stderr)
    for row in payload["top_compiles"]:
        print(f"  {row['seconds']:7.1f} s  {row['count']:4d}×  {row['name']}", file=sys.stderr)
    print(path)


if __name__ == "__main__":
    main()
