"""Store a notebook the way git keeps it: no outputs, except those of the cells marked
NBVAL_CHECK_OUTPUT, taken from an executed copy (run it first under the smoke profile).

    COURSE_PROFILE=smoke jupyter nbconvert --to notebook --execute notebooks/00_foundations.ipynb --output /tmp/run.ipynb
    python tools/store_notebook.py notebooks/00_foundations.ipynb /tmp/run.ipynb
    python tools/store_notebook.py --check notebooks/*.ipynb   (the pre-commit hook: exit 1 if any is not)
"""

import sys

import nbformat


def store(notebook_path: str, executed_path: str | None = None) -> None:
    notebook = nbformat.read(notebook_path, as_version=4)
    executed = nbformat.read(executed_path, as_version=4) if executed_path else None
    checked = {c.id: c for c in executed.cells} if executed else {}
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        cell.execution_count = None
        cell.outputs = []
        if "NBVAL_CHECK_OUTPUT" in cell.source and cell.id in checked:
            cell.outputs = [o for o in checked[cell.id].outputs if o.get("name") != "stderr"]
            cell.execution_count = checked[cell.id].execution_count  # nbval skips unrun cells
    nbformat.write(notebook, notebook_path)


def unstored_cells(notebook_path: str) -> list[str]:
    """The first line of every code cell that carries outputs it should not keep."""
    cells = nbformat.read(notebook_path, as_version=4).cells
    return [cell.source.splitlines()[0] if cell.source else "(empty cell)" for cell in cells
            if cell.cell_type == "code" and "NBVAL_CHECK_OUTPUT" not in cell.source
            and (cell.outputs or cell.execution_count is not None)]


def check(paths: list[str]) -> int:
    dirty = {path: unstored_cells(path) for path in paths}
    for path, cells in dirty.items():
        for first_line in cells:
            print(f"{path}: outputs stored in the cell starting {first_line!r}; "
                  f"run python tools/store_notebook.py {path}")
    return 1 if any(dirty.values()) else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--check"]:
        sys.exit(check(sys.argv[2:]))
    store(*sys.argv[1:3])
