"""Shared fixtures. The datasets come from the local copies the Makefile points at
(COURSE_DATA_DIRS) or from the project's data/ cache; nothing is downloaded here."""

import os
import sys
from pathlib import Path

import pytest
import torch

collect_ignore = ["fixtures"]  # notebooks other tests run, not course notebooks for nbval

# Notebook kernels are started as "python": make that this environment's Python.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
