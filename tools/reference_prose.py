"""Carry each notebook's Markdown into its reference copy (notebooks/results/quick/), keeping
the outputs that run recorded.

    python tools/reference_prose.py          # rewrite the copies whose words changed
    python tools/reference_prose.py --check  # exit 1 when a copy's words or code differ

An introduction quotes its reference run's numbers, so it is written after that run; this
puts the new words beside the recorded outputs. It refuses a notebook whose code cells
differ from those the run executed: its outputs would not be that code's, so record it
again (`python -m course_utils.harness.run_course --profile quick --only NN`). Until then
the notebook's introduction must say that its reference run is of earlier code (the marker
`STALE_MARK`, beside a sentence a reader sees), and its copy is left as recorded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from course_utils.harness.run_course import NOTEBOOKS, RECORDED, course_notebooks, reference_copy  # noqa: E402

INJECTED = "injected-parameters"  # the cell papermill adds after the parameters cell
STALE_MARK = "<!-- reference: earlier code -->"  # in an introduction: the reference run ran earlier code


def says_stale(notebook: nbformat.NotebookNode) -> bool:
    """Whether the notebook's introduction tells its reader that the reference run is of earlier code."""
    return STALE_MARK in notebook.cells[0].source


class StaleReference(ValueError):
    """The reference copy ran other code than the notebook holds."""


def refreshed(notebook: nbformat.NotebookNode, reference: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The reference copy with the notebook's Markdown cells and its own executed code cells."""
    ran = [c for c in reference.cells if c.cell_type == "code" and INJECTED not in c.metadata.get("tags", [])]
    injected = [c for c in reference.cells if INJECTED in c.metadata.get("tags", [])]
    code = [c.source for c in notebook.cells if c.cell_type == "code"]
    if [c.source for c in ran] != code:
        changed = next((i for i, (a, b) in enumerate(zip([c.source for c in ran], code)) if a != b), min(len(ran), len(code)))
        raise StaleReference(f"code cell {changed + 1} differs from the one its reference run executed")
    cells, executed = [], iter(ran)
    for cell in notebook.cells:
        cells.append(next(executed) if cell.cell_type == "code" else cell)
        if "parameters" in cell.metadata.get("tags", []):
            cells.extend(injected)
    return reference_copy(nbformat.from_dict({**reference, "cells": cells}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a copy is out of date")
    parser.add_argument("--profile", default="quick", help="the recorded run (default: quick)")
    arguments = parser.parse_args(argv)
    problems = []
    for path in course_notebooks():
        copy = RECORDED / arguments.profile / path.name
        if not copy.exists():
            problems.append(f"{copy.relative_to(NOTEBOOKS)}: missing; record it with make course PROFILE=quick")
            continue
        reference, notebook = nbformat.read(copy, 4), nbformat.read(path, 4)
        try:
            updated = refreshed(notebook, reference)
        except StaleReference as stale:
            if says_stale(notebook):
                print(f"{path.name}: {stale}; its introduction says so, the copy is left as recorded")
                continue
            problems.append(f"{path.name}: {stale}; record it again "
                            f"(python -m course_utils.harness.run_course --profile {arguments.profile} --only {path.name[:2]})")
            continue
        if says_stale(notebook):
            problems.append(f"{path.name}: its introduction says its reference run is of earlier code, but it "
                            f"ran this code: remove {STALE_MARK} and its sentence")
        elif updated != reference:
            if arguments.check:
                problems.append(f"{copy.relative_to(NOTEBOOKS)}: its Markdown differs from {path.name}'s; "
                                "run python tools/reference_prose.py")
            else:
                nbformat.write(updated, copy)
                print(f"updated {copy.relative_to(NOTEBOOKS)}")
    if problems:
        print("\n".join(problems), file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
