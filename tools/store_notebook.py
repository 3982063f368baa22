"""Store a notebook the way git keeps it: no outputs, except those of the cells marked
NBVAL_CHECK_OUTPUT, taken from an executed copy (run it first under the smoke profile).

    COURSE_PROFILE=smoke jupyter nbconvert --to notebook --execute notebooks/00_foundations.ipynb --output /tmp/run.ipynb
    python tools/store_notebook.py notebooks/00_foundations.ipynb /tmp/run.ipynb
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


if __name__ == "__main__":
    store(*sys.argv[1:3])
