"""Shared fixtures. The datasets come from the local copies the Makefile points at
(COURSE_DATA_DIRS) or from the project's data/ cache; nothing is downloaded here."""

import json
import os
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat
import papermill
import pytest
import torch

from course_utils.harness.execution import execute
from course_utils.profiles import get_profile
from course_utils.storage import exclusive
from browser_lab import INSTALL_HINT, SCREENSHOTS_ENV, Interaction, Lab, LabRun, chromium, has_widgets

collect_ignore = ["fixtures"]  # helper notebooks that other tests run

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))  # make_student, for the tests

# Notebook kernels are started as "python": make that this environment's Python.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"

# `make test` runs two pytest-xdist workers: each (and every kernel or JupyterLab it starts,
# which inherit OMP_NUM_THREADS) gets its share of the cores, never all of them: two processes
# each on both cores of a 2-core machine run several times slower than one after the other.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    THREADS = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(THREADS)
    torch.set_num_threads(THREADS)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def pytest_addoption(parser):
    parser.addoption("--browser-screenshots", metavar="DIR", default=os.environ.get(SCREENSHOTS_ENV),
                     help="save a screenshot of every widget before and after the browser test moves it "
                          f"(or set {SCREENSHOTS_ENV})")


@dataclass
class Execution:
    path: Path  # the executed copy
    results: Path  # its results file (course_utils.harness.results)
    error: str | None
    lab: LabRun | None = None  # what the browser saw, when it ran in JupyterLab


def _outcome(execution: Execution) -> dict:
    return dict(error=execution.error, lab=asdict(execution.lab) if execution.lab else None)


def _execution(folder: Path, name: str, outcome: dict) -> Execution:
    lab = outcome["lab"] and LabRun([Interaction(**i) for i in outcome["lab"]["interactions"]],
                                    outcome["lab"]["console_errors"])
    return Execution(folder / name, folder / "results.json", outcome["error"], lab)


@pytest.fixture(scope="session")
def executed(tmp_path_factory, request):
    """executed(notebook, profile, in_browser=True): the notebook run once this session in a fresh kernel (the
    same run for every test that asks, in whichever pytest-xdist worker: the first to ask
    runs it while the others wait, then read its outcome file); fails the asking test if the
    run failed.

    A smoke run of a notebook with widgets happens in JupyterLab in a real Chromium, when
    one is installed (tests/browser_lab.py: all cells, then every widget control moved, then
    saved); every other run, under papermill."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # shared by the workers
    screenshots = request.config.getoption("--browser-screenshots")
    failures = Path(request.config.rootpath) / "browser-failures"  # screenshots and console errors
    lab: list[Lab] = []

    def lab_started() -> Lab:  # one JupyterLab and one Chromium per worker, serving the shared folder
        if not lab:
            lab.append(Lab(root, Path(screenshots) if screenshots else None, failures).__enter__())
            request.addfinalizer(lambda: lab[0].__exit__(None, None, None))
        return lab[0]

    def in_lab(notebook: Path, copy: Path, parameters: dict) -> LabRun:
        papermill.execute_notebook(str(notebook), str(copy), parameters=parameters, prepare_only=True,
                                   kernel_name="python3", progress_bar=False)
        shown = nbformat.read(copy, 4)
        for cell in shown.cells:  # collapsed solutions show no prompt number: show every cell
            cell.metadata.get("jupyter", {}).pop("source_hidden", None)
        nbformat.write(shown, copy)
        return lab_started().run(copy.relative_to(root).as_posix())

    def execute_once(notebook: Path, profile: str, folder: Path, in_browser: bool) -> Execution:
        copy, results = folder / notebook.name, folder / "results.json"
        parameters = {"PROFILE": profile, "RESULTS_FILE": str(results)}
        browser = in_browser and profile == "smoke" and chromium() and has_widgets(nbformat.read(notebook, 4))
        seen, error = None, None
        try:
            if browser:
                seen = in_lab(notebook, copy, parameters)
            else:
                # a stalled cell is retried once in a fresh kernel, then fails the run
                report = execute(notebook, copy, parameters, timeout=get_profile(profile).cell_timeout)
                if report.stalled:  # finished on the retry: say so in the test report
                    warnings.warn(f"{notebook.name} ({profile}) stalled and was run again in a "
                                  f"fresh kernel: {report.stalled}")
        except Exception as failure:  # noqa: BLE001 (reported by every test that asks)
            error = f"{type(failure).__name__}: {failure}"
        return Execution(copy, results, error, seen)

    def run(notebook: Path, profile: str, in_browser: bool = True) -> Execution:
        folder = root / "notebook-runs" / f"{notebook.parent.name}-{notebook.stem}-{profile}"
        outcome = folder / "outcome.json"
        with exclusive(folder):
            if outcome.exists():
                execution = _execution(folder, notebook.name, json.loads(outcome.read_text()))
            else:
                folder.mkdir(parents=True)
                execution = execute_once(notebook, profile, folder, in_browser)
                outcome.write_text(json.dumps(_outcome(execution)))
        if execution.error is not None:
            pytest.fail(f"{notebook.name} failed in the {profile} profile: {execution.error}")
        return execution

    run.new_page = lambda: lab_started().browser.new_page()  # the worker's Chromium
    return run


@pytest.fixture
def browser():
    """Skips the asking test, saying how to install Chromium, when there is none."""
    if not chromium():
        pytest.skip(INSTALL_HINT)
