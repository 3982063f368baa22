"""The first code cell of every notebook: install the course on Colab, point elsewhere to `make lab`.

The cell is written here once and copied into each notebook (tagged `setup`), so that its
text, and the course's pip source, live in one place:

    python tools/setup_cell.py           # write or refresh the cell in every notebook
    python tools/setup_cell.py --check   # exit 1 if a notebook's cell differs (tests/test_tools.py)

Where `course_utils` imports, the cell does nothing (a local run, `make lab`, Binder, papermill).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
# the course's pip source on Colab; empty until the course has a public address (README, Three ways in)
SOURCE = ""
CELL = f'''# Setup: on Colab, install the course (a few minutes, once a session); elsewhere `make lab` has installed it
import importlib.util, os, subprocess, sys  # noqa: E401
COURSE_SOURCE = os.environ.get("COURSE_SOURCE", "{SOURCE}")  # pip's source for the course, e.g. "git+https://..."
if importlib.util.find_spec("course_utils") is None:
    if "google.colab" not in sys.modules or not COURSE_SOURCE:
        raise SystemExit("course_utils is not installed: run `make lab` in the course's folder (README), or on Colab set COURSE_SOURCE in this cell")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", COURSE_SOURCE], check=True)'''


def setup_cells(notebook: nbformat.NotebookNode) -> list[int]:
    return [i for i, cell in enumerate(notebook.cells) if "setup" in cell.metadata.get("tags", [])]


def refresh(path: Path) -> bool:
    """Put CELL first among the code cells of the notebook at `path`; True if it changed."""
    notebook = nbformat.read(path, as_version=4)
    found = setup_cells(notebook)
    if found and notebook.cells[found[0]].source == CELL:
        return False
    if found:
        notebook.cells[found[0]].source = CELL
    else:
        first_code = next(i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code")
        cell = nbformat.v4.new_code_cell(CELL, metadata={"tags": ["setup"]})
        cell.id = f"setup-{path.stem[:2]}"
        notebook.cells.insert(first_code, cell)
    nbformat.write(notebook, path)
    return True


def differs(path: Path) -> bool:
    notebook = nbformat.read(path, as_version=4)
    found = setup_cells(notebook)
    first_code = next(i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code")
    return found != [first_code] or notebook.cells[first_code].source != CELL


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report notebooks whose setup cell differs")
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.check:
        wrong = [path.name for path in paths if differs(path)]
        if wrong:
            print(f"the setup cell differs from tools/setup_cell.py in {', '.join(wrong)}: "
                  "run python tools/setup_cell.py", file=sys.stderr)
        return 1 if wrong else 0
    for path in paths:
        if refresh(path):
            print(f"setup cell written: {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
