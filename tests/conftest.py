"""Shared fixtures. The datasets come from the local copies the Makefile points at
(COURSE_DATA_DIRS) or from the project's data/ cache; nothing is downloaded here."""

import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import nbformat
import papermill
import pytest
import torch

from course_utils.execution import execute
from course_utils.profiles import get_profile
from browser_lab import INSTALL_HINT, SCREENSHOTS_ENV, Lab, LabRun, chromium, has_widgets

collect_ignore = ["fixtures"]  # helper notebooks that other tests run

# Notebook kernels are started as "python": make that this environment's Python.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"


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
    results: Path  # its results file (course_utils.results)
    error: Exception | None
    lab: LabRun | None = None  # what the browser saw, when it ran in JupyterLab


@pytest.fixture(scope="session")
def executed(tmp_path_factory, request):
    """executed(notebook, profile): the notebook run once this session in a fresh kernel (the
    same run for every test that asks); fails the asking test if the run failed.

    A smoke run of a notebook with widgets happens in JupyterLab in a real Chromium, when
    one is installed (tests/jupyterlab.py: all cells, then every widget control moved, then
    saved); every other run, under papermill."""
    runs: dict[tuple[Path, str], Execution] = {}
    screenshots = request.config.getoption("--browser-screenshots")
    failures = Path(request.config.rootpath) / "browser-failures"  # screenshots and console errors
    lab: list[Lab] = []

    def lab_started() -> Lab:  # one JupyterLab and one Chromium for the session, serving the temporary folder
        if not lab:
            lab.append(Lab(tmp_path_factory.getbasetemp(), Path(screenshots) if screenshots else None,
                           failures).__enter__())
            request.addfinalizer(lambda: lab[0].__exit__(None, None, None))
        return lab[0]

    def in_lab(notebook: Path, copy: Path, parameters: dict) -> LabRun:
        papermill.execute_notebook(str(notebook), str(copy), parameters=parameters, prepare_only=True,
                                   kernel_name="python3", progress_bar=False)
        shown = nbformat.read(copy, 4)
        for cell in shown.cells:  # collapsed solutions show no prompt number: show every cell
            cell.metadata.get("jupyter", {}).pop("source_hidden", None)
        nbformat.write(shown, copy)
        return lab_started().run(copy.relative_to(tmp_path_factory.getbasetemp()).as_posix())

    def run(notebook: Path, profile: str) -> Execution:
        if (notebook, profile) not in runs:
            folder = tmp_path_factory.mktemp(f"{notebook.stem}-{profile}")
            copy, results = folder / notebook.name, folder / "results.json"
            parameters = {"PROFILE": profile, "RESULTS_FILE": str(results)}
            browser = profile == "smoke" and chromium() and has_widgets(nbformat.read(notebook, 4))
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
                error = failure
            runs[notebook, profile] = Execution(copy, results, error, seen)
        execution = runs[notebook, profile]
        if execution.error is not None:
            pytest.fail(f"{notebook.name} failed in the {profile} profile: {execution.error}")
        return execution

    run.new_page = lambda: lab_started().browser.new_page()  # the session's Chromium (one per thread)
    return run


@pytest.fixture
def browser():
    """Skips the asking test, saying how to install Chromium, when there is none."""
    if not chromium():
        pytest.skip(INSTALL_HINT)
