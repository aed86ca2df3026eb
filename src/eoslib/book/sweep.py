"""Sweeps of a chapter over a grid of parameters, one chapter execution per point, through submitit.

``python -m eoslib sweep dln-rpe --scale smoke -p eta_factors "[[0.5], [0.9]]" --workers 2 --out DIR``

expands the grid (the Cartesian product of every ``-p NAME "[v1, v2, …]"`` list), checks every
point's parameters before anything runs, and executes the chapter once per point with papermill —
each point in its own folder ``DIR/<chapter>-<hash>`` named by a hash of the chapter, scale and
parameters, holding the executed notebook, the results record and ``point.json`` — then writes
``DIR/summary.json`` and prints a table of the points. A point that fails is listed with its error,
never dropped.

Executors (submitit's; no scheduler of our own):

- ``local`` (default): submitit's ``LocalExecutor``; the points are dealt into ``workers`` jobs that
  run side by side, each executing its points one after another.
- ``slurm``: submitit's ``SlurmExecutor``, one array task per point and at most ``workers`` running
  at once (``slurm_array_parallelism``); pass scheduler settings with ``--slurm KEY=VALUE`` (e.g.
  ``--slurm partition=gpu --slurm gpus_per_node=1 --slurm cpus_per_task=8 --slurm time=60``,
  submitit's own parameter names without the ``slurm_`` prefix).

Several points on one GPU: JAX preallocates 75% of GPU memory per process; set
``XLA_PYTHON_CLIENT_MEM_FRACTION=0.3`` (three processes) or ``XLA_PYTHON_CLIENT_PREALLOCATE=false``
in the environment of the workers. When the points differ only in hyperparameters that a chapter
already sweeps inside one program (step sizes, seeds, weight decays under ``vmap``), prefer that:
one process, one compilation, and the GPU kept busy; a process per point pays a compilation and a
kernel start each.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
import traceback
from pathlib import Path
from typing import Any, Mapping, Sequence

from eoslib.book import chapters
from eoslib.book.results import read_record

EXECUTORS = ("local", "slurm")


def grid(values: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The Cartesian product of ``{name: [v1, v2, …]}`` as a list of ``{name: value}`` points, in
    the order the names and values are given. Each value list must be a non-empty list."""
    for name, options in values.items():
        if not isinstance(options, (list, tuple)) or not options:
            raise ValueError(f"sweep values of {name!r} must be a non-empty list, e.g. "
                             f"-p {name} \"[v1, v2]\"; got {options!r}")
    names = list(values)
    return [dict(zip(names, combo)) for combo in itertools.product(*(values[n] for n in names))]


def point_id(chapter: str, scale: str, parameters: Mapping[str, Any]) -> str:
    """A short stable hash of one point (chapter, scale and parameters as canonical JSON)."""
    text = json.dumps({"chapter": chapter, "scale": scale, "parameters": dict(parameters)},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run_point(chapter: str, scale: str, parameters: Mapping[str, Any], out: str) -> dict[str, Any]:
    """Execute one point into ``out/<chapter>-<hash>``; a row of the summary (never raises)."""
    folder = Path(out) / f"{chapter}-{point_id(chapter, scale, parameters)}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "point.json").write_text(json.dumps(
        {"chapter": chapter, "scale": scale, "parameters": dict(parameters)}, indent=2, default=str))
    row: dict[str, Any] = {"point": folder.name, "parameters": dict(parameters), "folder": str(folder)}
    start = time.time()
    row["started"] = start  # POSIX times: the summary shows which points ran side by side
    try:
        chapters.execute(chapters.get_chapter(chapter), folder, scale=scale, parameters=parameters,
                         progress_bar=False)
        record = read_record(folder / f"{chapter}.json")
        row.update(status="ok", verdicts={c["id"]: c["verdict"] for c in record["claims"]})
    except Exception as err:  # a failed point is a row of the summary, not a lost job
        row.update(status="failed", error=_one_line(err), traceback=traceback.format_exc(limit=5))
    row["finished"] = time.time()
    row["wall_time_s"] = round(row["finished"] - start, 1)
    return row


def _one_line(err: BaseException) -> str:
    if hasattr(err, "ename"):  # papermill's execution error: the cell's own exception
        text = f"{err.ename}: {err.evalue} (cell {getattr(err, 'exec_count', '?')})"
    else:
        text = f"{type(err).__name__}: {err}"
    return (text.strip().splitlines() or [type(err).__name__])[0][:500]


def run_points(chapter: str, scale: str, points: Sequence[Mapping[str, Any]], out: str) -> list[dict[str, Any]]:
    """Execute ``points`` one after another (one submitit job's work)."""
    return [run_point(chapter, scale, p, out) for p in points]


def _executor(kind: str, log_folder: Path, workers: int, slurm: Mapping[str, Any]):
    import submitit

    if kind == "local":
        executor = submitit.LocalExecutor(folder=str(log_folder))
        executor.update_parameters(timeout_min=int(slurm.get("timeout_min", 24 * 60)))
        return executor
    executor = submitit.SlurmExecutor(folder=str(log_folder))
    executor.update_parameters(array_parallelism=workers, **slurm)
    return executor


def sweep(chapter: str, scale: str, values: Mapping[str, Sequence[Any]], out: str | Path, *,
          executor: str = "local", workers: int = 2, slurm: Mapping[str, Any] | None = None,
          fixed: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run ``chapter`` at every point of ``grid(values)`` (plus the ``fixed`` parameters); return the
    summary rows (one per point, in grid order) and write them to ``out/summary.json``.

    Every point's parameters are checked (names, types, ranges) before any job is submitted.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor={executor!r} is not one of {list(EXECUTORS)}")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r} must be a positive integer")
    target = chapters.get_chapter(chapter)
    points = [{**dict(fixed or {}), **p} for p in grid(values)]
    for p in points:
        chapters.check_parameters(target, scale, p)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if executor == "local":
        batches = [points[i::workers] for i in range(min(workers, len(points)))]
    else:
        batches = [[p] for p in points]
    runner = _executor(executor, out / "submitit", workers, dict(slurm or {}))
    jobs = runner.map_array(run_points, [chapter] * len(batches), [scale] * len(batches), batches,
                            [str(out)] * len(batches))
    by_point: dict[str, dict[str, Any]] = {}
    for job, batch in zip(jobs, batches):
        try:
            rows = job.result()
        except Exception as err:  # the job itself died (killed, timed out): its points failed
            rows = [{"point": f"{chapter}-{point_id(chapter, scale, p)}", "parameters": p,
                     "status": "failed", "error": f"job {job.job_id}: {_one_line(err)}"} for p in batch]
        for row in rows:
            by_point[row["point"]] = row
    summary = [by_point[f"{chapter}-{point_id(chapter, scale, p)}"] for p in points]
    (out / "summary.json").write_text(json.dumps(
        {"chapter": chapter, "scale": scale, "executor": executor, "workers": workers, "points": summary},
        indent=2, default=str) + "\n")
    return summary


def summary_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The summary as a plain-text table: point, status, wall time, parameters, verdicts or error."""
    lines = []
    for row in rows:
        params = json.dumps(row["parameters"], default=str)
        if row["status"] == "ok":
            detail = ", ".join(f"{k}: {v}" for k, v in row["verdicts"].items())
        else:
            detail = f"ERROR {row.get('error', '')}"
        wall = f"{row.get('wall_time_s', float('nan')):.0f}s"
        lines.append(f"{row['point']:<30} {row['status']:<7} {wall:>6}  {params}  {detail}")
    failed = sum(r["status"] != "ok" for r in rows)
    lines.append(f"{len(rows)} points, {len(rows) - failed} ok, {failed} failed")
    return "\n".join(lines)
