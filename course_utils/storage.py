"""Where the course keeps what it computes, and how it writes files without losing them.

Everything cached (decoded datasets, checkpoints) lives under the project's `data/`
folder, or under COURSE_DATA_HOME when that is set. Files are written to a temporary
name in the same folder and renamed into place, so a crash mid-write leaves the
previous file whole.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

DATA_HOME_ENV = "COURSE_DATA_HOME"
_REPO_DATA = Path(__file__).resolve().parent.parent / "data"


def data_home() -> Path:
    """The folder for caches and checkpoints (created on first use)."""
    home = Path(os.environ.get(DATA_HOME_ENV) or _REPO_DATA)
    home.mkdir(parents=True, exist_ok=True)
    return home


def atomic_save(obj, path: Path) -> None:
    """torch.save to `path` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(obj, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
