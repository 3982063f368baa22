"""Shared fixtures. The datasets come from the local copies the Makefile points at
(COURSE_DATA_DIRS) or from the project's data/ cache; nothing is downloaded here."""

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from course_utils.run_course import execute

collect_ignore = ["fixtures"]  # helper notebooks that other tests run

# Notebook kernels are started as "python": make that this environment's Python.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@dataclass
class Execution:
    path: Path  # the executed copy
    results: Path  # its results file (course_utils.results)
    error: Exception | None


@pytest.fixture(scope="session")
def executed(tmp_path_factory):
    """executed(notebook, profile): the notebook run once this session under papermill in
    a fresh kernel (the same run for every test that asks); fails the asking test if the
    run failed."""
    runs: dict[tuple[Path, str], Execution] = {}

    def run(notebook: Path, profile: str) -> Execution:
        if (notebook, profile) not in runs:
            folder = tmp_path_factory.mktemp(f"{notebook.stem}-{profile}")
            copy, results = folder / notebook.name, folder / "results.json"
            try:
                execute(notebook, copy, {"PROFILE": profile, "RESULTS_FILE": str(results)},
                        timeout=900)  # a hung cell fails
                error = None
            except Exception as failure:  # noqa: BLE001 (reported by every test that asks)
                error = failure
            runs[notebook, profile] = Execution(copy, results, error)
        execution = runs[notebook, profile]
        if execution.error is not None:
            pytest.fail(f"{notebook.name} failed in the {profile} profile: {execution.error}")
        return execution

    return run
