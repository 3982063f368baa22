"""The course's main job: run every notebook headless and summarise what each found.

    python -m course_utils.harness.run_course [--profile auto] [--out runs/<date>]

Each notebook in notebooks/ runs under papermill with its PROFILE set, in a fresh
kernel, each cell within the profile's `cell_timeout` (course_utils.harness.execution); the executed copy and the notebook's results JSON go to the output folder,
and summary.md gathers one row per notebook from those JSON files; site/index.html is the
run as pages to read from disk (course_utils.harness.site). A failing notebook is recorded and the
others still run; the exit status says whether all succeeded.

runs.json is written after every notebook, so an interrupted run resumes: the same command
with `--out` of that run skips the notebooks that finished (same profile) and runs the rest.
One process at a time writes a run folder (a lock on it): a second is refused, saying so.

A successful run of the `quick` or `paper` profile also records each notebook's results,
with its wall time, in notebooks/results/<profile>/<notebook>.json: the numbers a
notebook's introduction may quote (tests/test_prose_numbers.py holds it to them); and its
executed copy beside them (<notebook>.ipynb, without widget state or progress bars), the
reference run any notebook viewer shows and `make site` turns into pages.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
import time
from pathlib import Path

import nbformat

from .execution import NotebookFailed, execute
from ..profiles import get_profile
from ..claims import annotated
from .results import load_results
from ..storage import atomic_write, exclusive, move_aside, read_json, write_json
from .site import build_site

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
RECORDED = NOTEBOOKS / "results"  # results/<profile>/<notebook>.json, kept in git
RECORDED_PROFILES = ("quick", "paper")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def course_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def run_notebook(notebook: Path, out: Path, profile: str, **parameters) -> dict:
    """Execute one notebook headless (course_utils.harness.execution: a cell may take the profile's
    `cell_timeout`; a stalled cell gets one retry in a fresh kernel); returns its status,
    wall time and, when it happened, the stall that caused the retry."""
    start = time.perf_counter()
    try:
        report = execute(notebook, out / notebook.name,
                         dict(PROFILE=profile, RESULTS_FILE=str(out / f"{notebook.stem}.json"), **parameters),
                         timeout=get_profile(profile).cell_timeout)
        status, stalled = "ok", report.stalled
    except NotebookFailed as failed:
        status, stalled = f"failed: {failed.report.error}", failed.report.stalled
    annotate_claims(out / notebook.name, out / f"{notebook.stem}.json")
    return dict(notebook=notebook.stem, status=status, seconds=round(time.perf_counter() - start, 1),
                stalled=stalled)


def annotate_claims(executed: Path, results: Path) -> None:
    """Under every sentence of the executed notebook whose claim its run did not show, a line
    that says so (`claims.annotated`), so that no words stand that the run contradicts."""
    if not (executed.exists() and results.exists()):
        return
    try:
        recorded = read_json(results).get("claims", {})
        notebook = nbformat.read(executed, 4)
    except (OSError, ValueError, AttributeError) as error:
        print(f"claims not checked against {executed.name}: {error}", file=sys.stderr)
        return
    atomic_write(nbformat.writes(annotated(notebook, recorded)).encode(), executed)


def write_summary(out: Path, runs: list[dict]) -> Path:
    """summary.md: a row per notebook, its status and time, and the headline numbers it saved."""
    results = {r["notebook"]: r for r in load_results(out)}
    lines = ["# Course run", "",
             f"Run on {datetime.datetime.now():%Y-%m-%d %H:%M} in {out}.", "",
             "| notebook | status | profile | dataset | wall time | headline numbers |",
             "|---|---|---|---|---|---|"]
    for run in runs:
        result = results.get(run["notebook"], {})
        headline = ", ".join(f"{k}: {v}" for k, v in result.get("headline", {}).items())
        status = run["status"] + (f" (retried in a fresh kernel: {run['stalled']})" if run.get("stalled") else "")
        cells = [run["notebook"], status, result.get("profile", ""),
                 result.get("dataset", ""), f"{run['seconds']:.0f} s", headline]
        lines.append("| " + " | ".join(_table_cell(c) for c in cells) + " |")
    path = out / "summary.md"
    atomic_write(("\n".join(lines) + "\n").encode(), path)
    write_json(runs, out / "runs.json")
    return path


def record_results(out: Path, run: dict, recorded: Path = RECORDED) -> Path | None:
    """Keep a successful quick or paper run's results, with its wall time, in the repo."""
    results = out / f"{run['notebook']}.json"
    if run["status"] != "ok" or not results.exists():
        return None
    record = read_json(results)
    if record.get("profile") not in RECORDED_PROFILES:
        return None
    record.update(seconds=run["seconds"], recorded=f"{datetime.date.today()}")
    path = recorded / record["profile"] / results.name
    write_json(record, path)
    executed = out / f"{run['notebook']}.ipynb"
    if executed.exists():
        nbformat.write(reference_copy(nbformat.read(executed, 4)), path.with_suffix(".ipynb"))
    return path


def reference_copy(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """An executed notebook as the repo keeps it for reading: its figures, tables and printed
    results, without widgets (a viewer cannot run them; each notebook draws a static figure after
    its widget) or progress bars (on stderr, or tqdm's widgets),
    its links to results/<profile>/ made relative to that folder, where it is kept."""
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        if cell.cell_type == "markdown":  # the link to this reference copy, from beside it
            cell.source = re.sub(r"\]\(results/\w+/", "](", cell.source)
        if cell.cell_type != "code":
            continue
        if "injected-parameters" in cell.metadata.get("tags", []):  # not the recording machine's path
            cell.source = re.sub(r"RESULTS_FILE = .*", f'RESULTS_FILE = "{path_stem(notebook)}.json"', cell.source)
        kept = []
        for output in cell.outputs:
            if output.output_type == "stream" and output.name == "stderr":
                continue
            if WIDGET_VIEW not in output.get("data", {}):  # a widget's text stand-in: "0%|", "interactive(...)"
                kept.append(output)
        cell.outputs = kept
    return notebook


def path_stem(notebook: nbformat.NotebookNode) -> str:
    """The notebook's name without its folder or suffix, as papermill recorded it."""
    return Path(notebook.metadata.get("papermill", {}).get("input_path", "notebook")).stem


def _table_cell(value) -> str:
    """A value as one Markdown table cell: a `|` inside it would end the cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def finished_runs(out: Path, profile: str) -> dict[str, dict]:
    """The notebooks an earlier, interrupted run into `out` finished (status ok, results there),
    by name; a run of another profile is refused, a damaged runs.json moved aside."""
    path = out / "runs.json"
    if not path.exists():
        return {}
    try:
        runs = read_json(path)
    except ValueError as error:
        move_aside(path, f"{error}; its notebooks run again")
        return {}
    other = {run.get("profile") for run in runs} - {profile, None}
    if other:
        raise ValueError(f"{out} holds a run of the {', '.join(sorted(other))} profile; resume it with that "
                         f"--profile, or choose another --out")
    return {run["notebook"]: run for run in runs if run.get("status") == "ok"
            and (out / f"{run['notebook']}.json").exists() and (out / f"{run['notebook']}.ipynb").exists()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=os.environ.get("COURSE_PROFILE", "auto"),
                        help="smoke, shapes, quick, paper or auto (default: $COURSE_PROFILE or auto)")
    parser.add_argument("--out", type=Path,
                        help="the run's folder (default: runs/<date and time>); an interrupted run's "
                             "folder resumes it")
    parser.add_argument("--only", nargs="+", default=None, metavar="PREFIX",
                        help="notebook name prefixes to run, e.g. 00 03 (default: all)")
    args = parser.parse_args(argv)
    try:
        profile = get_profile(args.profile).name
    except ValueError as error:
        parser.error(str(error))
    notebooks = [nb for nb in course_notebooks()
                 if args.only is None or any(nb.name.startswith(p) for p in args.only)]
    if not notebooks:
        parser.error(f"--only {' '.join(args.only)} names no notebook; they are: "
                     + ", ".join(nb.stem for nb in course_notebooks()))
    # the notebooks run in notebooks/: a relative path would land there
    out = (args.out or ROOT / "runs" / f"{datetime.datetime.now():%Y-%m-%d_%H%M%S}").resolve()
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out / ".run_course", wait=False) as mine:
        if not mine:
            parser.error(f"another run_course is writing {out} now; wait for it, or choose another --out")
        try:
            done = finished_runs(out, profile)
        except ValueError as error:
            parser.error(str(error))
        return _run_all(notebooks, out, profile, done)


def _run_all(notebooks: list[Path], out: Path, profile: str, done: dict[str, dict]) -> int:
    """Run every notebook not already `done`, recording runs.json after each; then the summary and pages."""
    if done:
        print(f"resuming {out}: {len(done)} of {len(notebooks)} notebooks finished before, skipped", flush=True)
    runs = [run for run in done.values() if run["notebook"] not in {nb.stem for nb in notebooks}]
    for notebook in notebooks:
        if notebook.stem in done:
            runs.append(done[notebook.stem])
            continue
        print(f"running {notebook.name} (profile {profile}) ...", flush=True)
        runs.append({**run_notebook(notebook, out, profile), "profile": profile})
        print(f"  {runs[-1]['status']} in {runs[-1]['seconds']:.0f} s", flush=True)
        write_json(runs, out / "runs.json")
        record_results(out, runs[-1])
    summary = write_summary(out, runs)
    print(summary.read_text())
    print(f"pages to read: {build_site(out)}")
    return 0 if all(run["status"] == "ok" for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
