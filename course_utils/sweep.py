"""Run one notebook over a grid of parameters with papermill, and gather what each run found.

    python -m course_utils.sweep notebooks/05_taylor_pruning_deep_networks.ipynb \\
        --grid SEED=0,1,2 --grid STEP=0.05,0.1 --set PROFILE=smoke --plot resnet18_accuracy_diff_points

Every combination of the `--grid` values is one run, in its own folder under `--out`
(`runs/sweeps/<notebook>` by default): the executed notebook, the results JSON the
notebook saved, and run.json (parameters, status, seconds, the error if it failed).
Finished runs are never run again nor overwritten, so the same command resumes a sweep;
a failed run is recorded, the others go on, and the next call retries it. Runs go in
parallel processes (`--jobs`), the cores shared between them. results.csv has a row
per run (its parameters and headline numbers); with `--plot KEY`, plot.png draws that
headline number against the first grid parameter, the mean and spread over the others.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


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


def grid_runs(grid: dict[str, list], fixed: dict) -> list[dict]:
    """Every combination of the grid's values, each with the fixed parameters."""
    names = list(grid)
    return [{**fixed, **dict(zip(names, values))}
            for values in itertools.product(*(grid[n] for n in names))]


def run_name(parameters: dict, grid_names: list[str]) -> str:
    """A folder name from the grid parameters' values, e.g. SEED=1_STEP=0.05."""
    text = "_".join(f"{name}={json.dumps(parameters[name])}" for name in grid_names) or "run"
    return re.sub(r"[^A-Za-z0-9=._-]+", "-", text)


def run_one(notebook: Path, folder: Path, parameters: dict, threads: int) -> dict:
    """Execute `notebook` into `folder` unless a finished run is there; returns its record."""
    record_path = folder / "run.json"
    if record_path.exists():
        record = json.loads(record_path.read_text())
        if record["status"] == "ok":
            return {**record, "skipped": True}
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    command = [sys.executable, "-m", "papermill", str(notebook), str(partial / notebook.name),
               "--cwd", str(notebook.parent), "--no-progress-bar",
               "-y", json.dumps({**parameters, "RESULTS_FILE": str(partial / "results.json")})]
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    finished = subprocess.run(command, env=environment, capture_output=True, text=True)
    record = dict(parameters=parameters, seconds=round(time.perf_counter() - start, 1),
                  status="ok" if finished.returncode == 0 else "failed",
                  error=None if finished.returncode == 0 else _last_error(finished.stderr))
    (partial / "run.json").write_text(json.dumps(record, indent=2))
    shutil.rmtree(folder, ignore_errors=True)  # only an earlier failed run can be there
    partial.rename(folder)
    return {**record, "skipped": False}


def _last_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", line)]
    return (errors or lines or ["no output"])[-1][:500]


def collect(out: Path, runs: dict[str, dict]) -> pd.DataFrame:
    """results.csv: a row per run, its parameters, status, time and headline numbers."""
    rows = []
    for name, record in runs.items():
        results = out / name / "results.json"
        headline = json.loads(results.read_text())["headline"] if results.exists() else {}
        rows.append({"run": name, "status": record["status"], "seconds": record["seconds"],
                     "error": record.get("error"), **record["parameters"], **headline})
    table = pd.DataFrame(rows)
    table.to_csv(out / "results.csv", index=False)
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
                        help="runs at once (default: half the cores); the cores are shared")
    parser.add_argument("--plot", metavar="KEY", help="a headline number to plot")
    args = parser.parse_args(argv)
    if not args.notebook.exists():
        parser.error(f"no notebook {args.notebook}")
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    try:
        grid = dict(parse_assignment(text, grid=True) for text in args.grid)
        fixed = dict(parse_assignment(text, grid=False) for text in args.set)
    except ValueError as error:
        parser.error(str(error))
    fixed.setdefault("PROFILE", os.environ.get("COURSE_PROFILE", "auto"))
    out = args.out or ROOT / "runs" / "sweeps" / args.notebook.stem
    out.mkdir(parents=True, exist_ok=True)
    runs = {run_name(p, list(grid)): p for p in grid_runs(grid, fixed)}
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    print(f"{len(runs)} runs of {args.notebook.name} in {out}, {args.jobs} at a time", flush=True)

    def execute(item):
        name, parameters = item
        record = run_one(args.notebook.resolve(), out / name, parameters, threads)
        state = "finished before, skipped" if record["skipped"] else (
            f"{record['status']} in {record['seconds']:.0f} s"
            + (f": {record['error']}" if record["error"] else ""))
        print(f"  {name}: {state}", flush=True)
        return name, record

    with ThreadPoolExecutor(args.jobs) as pool:
        records = dict(pool.map(execute, runs.items()))
    table = collect(out, records)
    if args.plot:
        plot(table, args.plot, list(grid), out / "plot.png")
    failed = int((table["status"] != "ok").sum())
    print(f"{len(table) - failed} finished, {failed} failed; {out / 'results.csv'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
