"""Notebook 00 opened where the course is not installed: its setup cell installs it on Colab
(a stand-in `google.colab` module, the course's pip source pointed at this checkout), says
`make lab` anywhere else, and the notebook's first cells then run."""

import os
import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import setup_cell  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def test_every_notebook_starts_with_the_one_setup_cell():
    assert setup_cell.main(["--check"]) == 0


@pytest.fixture
def bare_python(tmp_path):
    """A fresh virtual environment that sees this one's packages (torch, jupyter, ...) but
    not course_utils, which this checkout installs as editable: the .pth below adds the
    site-packages folder as a plain path, whose own .pth files (the editable finder) never run."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    target = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                            check=True, capture_output=True, text=True).stdout.strip()
    Path(target, "course_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


def run_cells(python, cells, workdir, **environment):
    script = workdir / "cells.py"
    script.write_text("\n\n".join(cells))
    return subprocess.run([python, str(script)], cwd=workdir, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COURSE_PROFILE": "smoke", **environment})


def course_source(folder):
    """The package's files of this checkout, copied: pip builds its source in place, and its
    build/ folder belongs in the copy, not in the checkout."""
    folder.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, folder / name)
    shutil.copytree(ROOT / "course_utils", folder / "course_utils", ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "notebooks").mkdir()
    for lesson in (ROOT / "notebooks").glob("*.py"):  # the lesson modules, installed as course_lessons
        shutil.copy(lesson, folder / "notebooks" / lesson.name)
    return folder


def test_the_setup_cell_installs_the_course_on_colab_and_points_elsewhere_to_make_lab(bare_python, tmp_path):
    source = str(course_source(tmp_path / "source"))
    cells = [c.source for c in nbformat.read(ROOT / "notebooks" / "00_foundations.ipynb", 4).cells
             if c.cell_type == "code"]
    assert cells[0] == setup_cell.CELL
    elsewhere = run_cells(bare_python, cells[:1], tmp_path, COURSE_SOURCE=source)
    assert elsewhere.returncode == 1 and "run `make lab`" in elsewhere.stderr
    colab = tmp_path / "colab"
    (colab / "google" / "colab").mkdir(parents=True)
    (colab / "google" / "colab" / "__init__.py").write_text("")
    first_cells = ["import sys; sys.path.insert(0, 'colab'); import google.colab", *cells[:3],
                   textwrap.dedent("""
                       import course_utils
                       assert "site-packages" in course_utils.__file__, course_utils.__file__  # installed, not this checkout
                       assert "site-packages" in lesson.__file__, lesson.__file__  # its lesson, installed with it
                       print("first cells ran:", profile.name, device)""")]
    ran = run_cells(bare_python, first_cells, tmp_path, COURSE_SOURCE=source)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "first cells ran: smoke" in ran.stdout
