"""Run one notebook over a grid of parameters with papermill, and gather what each run found.

    python -m course_utils.harness.sweep notebooks/05_taylor_pruning_deep_networks.ipynb \\
        --grid SEED=0,1,2 --grid STEP=0.05,0.1 --set PROFILE=smoke --plot resnet18_accuracy_diff_points

Every combination of the `--grid` values is one run, in its own folder under `--out`
(`runs/sweeps/<notebook>` by default), named after its grid values and a digest of all
its parameters: the executed notebook, the results JSON the notebook saved, and run.json
(parameters, status, seconds, the error if it failed, a stall that caused a retry).
A parameter the notebook does not define, or one given twice, is refused before anything
runs. Finished runs are never run again nor overwritten, so the same command resumes a
sweep (the same grid with another `--set` is other runs); a failed run is recorded, the
others go on, and the next call retries it. results.csv has a row per run (its parameters
and headline numbers); with `--plot KEY`, plot.png draws that headline number against the
first grid parameter, the mean and spread over the others.

Each run is one task on a Dask distributed cluster: by default a local one with `--jobs`
worker processes (the cores shared between them), or an existing one with `--scheduler
ADDRESS` (started by hand, or by dask-jobqueue on SLURM/PBS, or dask-kubernetes). A run
holds a lock on its folder while it works (out/.locks/), so two sweeps into one `--out`
share the work: the second waits for a run the first is doing and finds it finished, and a
finished run is never replaced. A run is written to a `.partial-*` folder and renamed when
it ends, so a worker that dies mid-run leaves nothing that counts as done, and Dask runs the
task again on another worker; `.partial-*` folders no live process owns (a sweep killed by
Ctrl-C or SIGKILL) are removed by the next sweep into the folder. A notebook that raises, or
whose own process is killed (the out-of-memory killer takes the notebook's kernel, not the
worker), is a finished task, recorded as failed, and run again by the next call. A run.json
or results.json that cannot be read is named, moved aside and run again; results.csv is
written whole or not at all.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import hashlib
import importlib.util
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from .execution import check_parameters
from ..profiles import get_profile
from ..storage import atomic_write, exclusive, move_aside, read_json, write_json

ROOT = Path(__file__).resolve().parents[2]
MAX_READABLE = 80  # characters of a run folder's name taken from its values (a digest follows)


def parse_value(text: str):
    """A parameter value as JSON (numbers, booleans, null, lists), else as a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_assignment(text: str, grid: bool):
    """NAME=value (`--set`) or NAME=v1,v2,... / NAME=[v1, v2] (`--grid`)."""
    name, separator, values = text.partition("=")
    if not separator or not name.isidentifier():
        raise ValueError(f"expected NAME=value, got {text!r}")
    if not grid:
        return name, parse_value(values)
    parsed = parse_value(values) if values.startswith("[") else [
        parse_value(v) for v in values.split(",")]
    if not isinstance(parsed, list) or not parsed:
        raise ValueError(f"--grid {name} needs at least one value, got {values!r}")
    return name, parsed


SET_BY_THE_SWEEP = ("RESULTS_FILE",)  # each run's results go to its own folder


def read_assignments(grid_texts: list[str], set_texts: list[str]) -> tuple[dict, dict]:
    """The `--grid` and `--set` assignments as two dicts; a name given twice (in one of them
    or in both), a value repeated in a grid, or a parameter the sweep sets itself is refused:
    otherwise one of the values would be dropped without a word."""
    grid, fixed = {}, {}
    for texts, is_grid, target in ((grid_texts, True, grid), (set_texts, False, fixed)):
        for text in texts:
            name, value = parse_assignment(text, is_grid)
            if name in SET_BY_THE_SWEEP:
                raise ValueError(f"{name} is set by the sweep (each run's results go to its own folder); "
                                 f"leave it out")
            if name in grid or name in fixed:
                where = "--grid" if name in grid else "--set"
                raise ValueError(f"{name} is given twice ({where} and {'--grid' if is_grid else '--set'} "
                                 f"{text!r}); give each parameter once (all its values in one --grid)")
            if is_grid and len({json.dumps(v, sort_keys=True) for v in value}) < len(value):
                raise ValueError(f"--grid {text!r} repeats a value; give each value once")
            target[name] = value
    return grid, fixed


def grid_runs(grid: dict[str, list], fixed: dict) -> list[dict]:
    """Every combination of the grid's values, each with the fixed parameters."""
    names = list(grid)
    return [{**fixed, **dict(zip(names, values))}
            for values in itertools.product(*(grid[n] for n in names))]


def run_name(parameters: dict, grid_names: list[str]) -> str:
    """A folder name from the grid parameters' values and a digest of every parameter the
    run gets (grid and --set), e.g. SEED=1_STEP=0.05-3fa2c1d9: two runs share a folder only
    when they share every parameter, whatever the characters or length of the values."""
    text = "_".join(f"{name}={json.dumps(parameters[name])}" for name in grid_names) or "run"
    readable = re.sub(r"[^A-Za-z0-9=._-]+", "-", text)[:MAX_READABLE]
    digest = hashlib.sha1(json.dumps(parameters, sort_keys=True).encode()).hexdigest()[:8]
    return f"{readable}-{digest}"


def run_one(notebook: Path, folder: Path, parameters: dict, threads: int,
            gpus: list[int] | None = None, session: str = "") -> dict:
    """Execute `notebook` into `folder` unless a finished run of the same parameters is
    there; returns its record. The run holds a lock on `folder` while it works, so that two
    sweeps into one `--out` run it once (the second waits, then finds it finished); it is
    written to a folder of its own (named after the sweep's `session`) and renamed into
    place only when it ends, replacing at most an earlier failed run. Each cell may take the
    profile's `cell_timeout`; a stalled run is retried once in a fresh kernel
    (course_utils.harness.execution). `gpus`: the only GPUs the notebook may see."""
    with exclusive(_lock_of(folder)):
        _remove_partials_of(folder)  # we hold the run's lock: no live process owns them
        record = finished_record(folder, parameters)
        if record is not None:
            return {**record, "skipped": True}
        partial = folder.with_name(f"{folder.name}.partial-{session}-{uuid.uuid4().hex[:8]}")
        partial.mkdir(parents=True)
        record = _execute(notebook, partial, parameters, threads, gpus)
        write_json(record, partial / "run.json")
        shutil.rmtree(folder, ignore_errors=True)  # under the lock: only a failed or damaged run is there
        partial.rename(folder)
    return {**record, "skipped": False}


def finished_record(folder: Path, parameters: dict) -> dict | None:
    """The record of a finished run of `parameters` in `folder`, or None when it must run (none,
    failed, or damaged: a run.json or results.json that cannot be read is named and moved aside).
    A folder holding a run of other parameters is refused."""
    record = _readable(folder / "run.json")
    if record is None:
        return None
    if record.get("parameters") != parameters:
        raise RuntimeError(f"{folder} holds a run of other parameters ({record.get('parameters')}); "
                           "move it away to run this one")
    if record.get("status") != "ok" or _readable(folder / "results.json") is None:
        return None  # a finished run has its results: without them (damaged, moved aside) it runs again
    return record


def _readable(path: Path) -> dict | None:
    """The JSON object at `path`; None when there is none, or when it is damaged (then moved aside)."""
    if not path.exists():
        return None
    try:
        value = read_json(path)
        if isinstance(value, dict):
            return value
        problem = "it is not a JSON object"
    except (OSError, ValueError) as error:
        problem = str(error)
    move_aside(path, f"{problem}; the run counts as not done")
    return None


def _execute(notebook: Path, partial: Path, parameters: dict, threads: int, gpus: list[int] | None) -> dict:
    """Run the notebook into `partial` in a child process; its record (status, seconds, error)."""
    command = [sys.executable, "-m", "course_utils.harness.execution", str(notebook), str(partial / notebook.name),
               "-y", json.dumps({**parameters, "RESULTS_FILE": str(partial / "results.json")}),
               "--timeout", str(get_profile(parameters.get("PROFILE", "auto")).cell_timeout),
               "--report", str(partial / "report.json")]
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if gpus is not None:
        environment["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
    start = time.perf_counter()
    finished = subprocess.run(command, env=environment, capture_output=True, text=True,
                              preexec_fn=_die_with_parent)
    report = _readable(partial / "report.json") or {}
    ok = finished.returncode == 0
    return dict(parameters=parameters, seconds=round(time.perf_counter() - start, 1),
                status="ok" if ok else "failed",
                error=None if ok else report.get("error") or _process_error(finished),
                stalled=report.get("stalled"))


def _process_error(finished: subprocess.CompletedProcess) -> str:
    """What ended a run that wrote no report: a signal (the out-of-memory killer sends
    SIGKILL) or the last error line it printed."""
    if finished.returncode < 0:
        name = signal.Signals(-finished.returncode).name
        return (f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
                + "; the next call of the sweep runs it again")
    return _last_error(finished.stderr)


def _die_with_parent() -> None:
    """In the papermill child: be killed when the worker that started it dies (Linux), so
    that a dead worker leaves no run writing behind the retry's back."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class GpuSlots:
    """The GPUs of one worker, handed out to the runs it executes at the same time.

    A worker started with CUDA_VISIBLE_DEVICES (by SLURM, or by hand) owns those GPUs; a
    worker of a local cluster, named 0, 1, 2, ..., owns the block of `count` GPUs that its
    number gives; any other worker owns GPUs 0 to count - 1."""

    def __init__(self, worker_name, count: int, environ: dict):
        given = environ.get("CUDA_VISIBLE_DEVICES")
        if given:
            self.owned = [int(g) for g in given.split(",") if g.strip()]
        else:
            first = int(worker_name) * count if str(worker_name).isdigit() else 0
            self.owned = list(range(first, first + count))
        self.in_use: set[int] = set()
        self.lock = threading.Lock()

    def claim(self, gpus_per_run: int) -> list[int]:
        with self.lock:
            free = [g for g in self.owned if g not in self.in_use][:gpus_per_run]
            if len(free) < gpus_per_run:
                raise RuntimeError(f"this worker has {len(self.owned)} GPUs ({self.owned}), "
                                   f"{len(self.in_use)} in use: not {gpus_per_run} free")
            self.in_use.update(free)
            return free

    def release(self, gpus: list[int]) -> None:
        with self.lock:
            self.in_use.difference_update(gpus)


_slots: GpuSlots | None = None  # this worker process's GPUs, made at its first GPU run


def run_task(notebook: Path, folder: Path, parameters: dict, threads: int,
             gpus_per_run: int, session: str = "") -> dict:
    """One run as a Dask task, on whichever worker the scheduler picked; with
    `gpus_per_run`, the run sees only the GPUs it claimed on that worker."""
    global _slots
    if not gpus_per_run:
        return run_one(notebook, folder, parameters, threads, session=session)
    from distributed import get_worker

    worker = get_worker()
    if _slots is None:
        declared = worker.state.total_resources.get("GPU", gpus_per_run)
        _slots = GpuSlots(worker.name, int(declared), os.environ)
    gpus = _slots.claim(gpus_per_run)
    try:
        return run_one(notebook, folder, parameters, threads, gpus, session)
    finally:
        _slots.release(gpus)


def _last_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", line)]
    return (errors or lines or ["no output"])[-1][:500]


def _lock_of(folder: Path) -> Path:
    """What a run's lock is named after: out/.locks/<run> (its lock file <run>.lock there)."""
    return folder.parent / ".locks" / folder.name


def _remove_partials_of(folder: Path) -> None:
    for partial in folder.parent.glob(f"{glob.escape(folder.name)}.partial-*"):
        shutil.rmtree(partial, ignore_errors=True)


def remove_orphaned_partials(out: Path) -> None:
    """The `.partial-*` folders of runs no live process is running (a sweep killed by Ctrl-C
    or SIGKILL, a worker that died): never counted, removed. A run in progress holds its
    lock, so its folder is left to it, whichever sweep started it."""
    for partial in out.glob("*.partial-*"):
        folder = partial.with_name(partial.name.split(".partial-")[0])
        with exclusive(_lock_of(folder), wait=False) as unowned:
            if unowned:
                _remove_partials_of(folder)


@contextmanager
def cluster_client(jobs: int, scheduler: str | None, gpus_per_run: int):
    """A Dask client: of the cluster at `scheduler`, or of a new local one with `jobs`
    single-threaded worker processes (each declaring `gpus_per_run` GPUs as a resource),
    closed with the client."""
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    resources = {"GPU": gpus_per_run} if gpus_per_run else None
    with LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                      resources=resources, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        yield client


def collect(out: Path) -> pd.DataFrame:
    """results.csv: a row per finished or failed run in `out` (this sweep's and any other's
    into the same folder), its parameters, status, time and headline numbers; written to a
    temporary file and renamed, so a reader never sees half a table. A run whose run.json or
    results.json cannot be read is a failed row that says so (the file moved aside, and the
    next call of the sweep runs it again): the table is never silently out of date."""
    rows = []
    for folder in sorted(path.parent for path in out.glob("*/run.json")):
        if ".partial-" in folder.name:
            continue
        record = _readable(folder / "run.json")
        if record is None:
            rows.append({"run": folder.name, "status": "failed",
                         "error": "its run.json was damaged (moved aside); the next call runs it again"})
            continue
        row = {"run": folder.name, "status": record.get("status"), "seconds": record.get("seconds"),
               "error": record.get("error"), "stalled": record.get("stalled"), **record.get("parameters", {})}
        results = folder / "results.json"
        if results.exists():
            stored = _readable(results)
            if stored is None or not isinstance(stored.get("headline"), dict):
                row.update(status="failed", error="its results.json was damaged (moved aside); "
                                                  "the next call runs it again")
            else:
                row.update(stored["headline"])
        rows.append(row)
    table = pd.DataFrame(rows)
    csv = table.to_csv(index=False)
    atomic_write(csv.encode(), out / "results.csv")
    return table


def plot(table: pd.DataFrame, key: str, grid_names: list[str], path: Path) -> None:
    """`key` against the first grid parameter: the mean over the other parameters, and
    their spread (standard deviation) as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = table[table["status"] == "ok"]
    if key not in done:
        raise ValueError(f"no finished run has a headline number {key!r}; they have: "
                         f"{', '.join(c for c in done.columns if c not in grid_names)}")
    x = grid_names[0]
    summary = done.groupby(x)[key].agg(["mean", "std", "count"]).reset_index()
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.errorbar(summary[x].astype(str), summary["mean"], yerr=summary["std"].fillna(0),
                  marker="o", capsize=4)
    axis.set(xlabel=x, ylabel=key,
             title=f"{key}: mean and spread over {', '.join(grid_names[1:]) or 'one run'}")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2",
                        help="a parameter and its values; every combination is one run")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a parameter the same in every run")
    parser.add_argument("--out", type=Path, help="default: runs/sweeps/<notebook name>")
    parser.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 1) // 2),
                        help="worker processes of the local cluster, one run each at a time "
                             "(default: half the cores); the cores are shared between them")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="the address of a running Dask scheduler (tcp://host:8786) to use "
                             "instead of a local cluster; --out must then be a folder every "
                             "worker can write (a shared file system)")
    parser.add_argument("--gpus-per-run", type=int, default=0, metavar="K",
                        help="GPUs each run needs, a Dask worker resource 'GPU': a worker "
                             "declaring 4 runs 4 notebooks of K=1 at once, each seeing only "
                             "its own GPU")
    parser.add_argument("--plot", metavar="KEY", help="a headline number to plot")
    args = parser.parse_args(argv)
    if not args.notebook.exists():
        parser.error(f"no notebook {args.notebook}")
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.gpus_per_run < 0:
        parser.error(f"--gpus-per-run must be 0 or more, got {args.gpus_per_run}")
    try:
        grid, fixed = read_assignments(args.grid, args.set)
    except ValueError as error:
        parser.error(str(error))
    fixed.setdefault("PROFILE", os.environ.get("COURSE_PROFILE", "auto"))
    try:
        check_parameters(args.notebook, {**grid, **fixed})
        for profile in grid.get("PROFILE", [fixed["PROFILE"]]):
            get_profile(str(profile))
    except ValueError as error:
        parser.error(str(error))
    out = (args.out or ROOT / "runs" / "sweeps" / args.notebook.stem).resolve()
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    remove_orphaned_partials(out)
    runs = {run_name(p, list(grid)): p for p in grid_runs(grid, fixed)}
    for name, parameters in runs.items():  # here, so that a damaged record is named where it is read
        try:
            finished_record(out / name, parameters)
        except RuntimeError as error:
            parser.error(str(error))
    session = uuid.uuid4().hex[:8]
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    with cluster_client(args.jobs, args.scheduler, args.gpus_per_run) as client:
        where = args.scheduler or f"a local cluster of {args.jobs} worker(s)"
        serving = ("dashboard" in client.scheduler_info().get("services", {})
                   and importlib.util.find_spec("bokeh") is not None)  # its pages need bokeh
        print(f"{len(runs)} runs of {args.notebook.name} in {out}, on {where}"
              + (f"; dashboard {client.dashboard_link}" if serving else ""), flush=True)
        records = _run_on(client, runs, args.notebook.resolve(), out, threads, args.gpus_per_run, session)
    remove_orphaned_partials(out)
    table = collect(out)
    if args.plot:
        plot(table, args.plot, list(grid), out / "plot.png")
    failed = sum(record["status"] != "ok" for record in records.values())
    print(f"{len(records) - failed} finished, {failed} failed; {out / 'results.csv'}")
    return 1 if failed else 0


def _executing(dask_worker) -> int:
    """On a worker: how many tasks it is running now (not merely queued for)."""
    return len(dask_worker.state.executing)


def _run_on(client, runs: dict[str, dict], notebook: Path, out: Path, threads: int,
            gpus_per_run: int, session: str) -> dict[str, dict]:
    """Submit one task per run, report each as it ends, a progress bar over them all."""
    from distributed import as_completed

    resources = {"GPU": gpus_per_run} if gpus_per_run else None
    futures = {client.submit(run_task, notebook, out / name, parameters, threads, gpus_per_run, session,
                             key=f"sweep-{out.name}-{name}-{uuid.uuid4().hex[:6]}", pure=False,
                             retries=2, resources=resources): name
               for name, parameters in runs.items()}
    records, counts = {}, {"ok": 0, "failed": 0}
    bar = tqdm(total=len(futures), desc="runs", unit="run")
    for future in as_completed(futures):
        name, record = futures[future], future.result()
        records[name] = record
        counts[record["status"]] += 1
        state = "finished before, skipped" if record["skipped"] else (
            f"{record['status']} in {record['seconds']:.0f} s"
            + (f": {record['error']}" if record["error"] else "")
            + (f" (retried in a fresh kernel: {record['stalled']})" if record.get("stalled") else ""))
        bar.write(f"  {name}: {state}")
        bar.update()
        running = sum(client.run(_executing).values())
        bar.set_postfix(finished=counts["ok"], failed=counts["failed"], running=running)
    bar.close()
    return records


if __name__ == "__main__":
    sys.exit(main())
