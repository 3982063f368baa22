"""The exercise checks, and the shape every notebook's exercises must have."""

import re
from pathlib import Path

import nbformat
import pytest
import torch

from course_utils.exercises import check

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_check_says_correct_or_what_is_off(capsys):
    assert check(77, 77, "parameters") and "correct" in capsys.readouterr().out
    assert not check(100, 80, "parameters") and "too high by 25%" in capsys.readouterr().out
    assert not check(None, 3, "x") and "no answer" in capsys.readouterr().out
    assert check(torch.tensor(0.5), 0.5004, "share", tolerance=1e-2)
    assert not check([1, 2, 5], {1, 2, 3, 4}, "groups")
    assert "2 right, 2 missing, 1 that should not be there" in capsys.readouterr().out
    assert check(torch.tensor([3, 1]), {1, 3}, "filters")
    assert check(torch.tensor([0.5, 2.0]), [0.5, 2.0001], "scales")
    assert not check([2.0, 0.5], [0.5, 2.0], "scales") and "entries [0, 1]" in capsys.readouterr().out
    assert not check("3", 3, "count")


def exercises(notebook):
    """(the exercise list's items, the code cells, the solution cells) of a notebook."""
    cells = nbformat.read(notebook, as_version=4).cells
    heading = [i for i, c in enumerate(cells) if c.cell_type == "markdown"
               and c.source.startswith("## Exercises")]
    assert len(heading) == 1, "one markdown cell starting '## Exercises'"
    items = re.findall(r"^\d+\. (.+?)(?=^\d+\. |\Z)", cells[heading[0]].source, re.M | re.S)
    code = [c.source for c in cells if c.cell_type == "code"]
    solutions = [c for c in cells if "solution" in c.metadata.get("tags", [])]
    return items, code, solutions


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_every_notebook_ends_with_exercises_a_student_can_check(notebook):
    items, code, solutions = exercises(notebook)
    assert 3 <= len(items) <= 5
    for number, item in enumerate(items, 1):
        checked = f"check_{number}(" in item
        assert checked or "**Expected:**" in item, \
            f"exercise {number} needs a check_{number}(...) or an **Expected:** observation"
        if checked:
            assert any(f"def check_{number}(" in source for source in code)
        solution = [c for c in solutions if c.source.startswith(f"# Solution {number}")]
        assert len(solution) == 1, f"exercise {number} has one solution cell, tagged 'solution'"
        assert solution[0].metadata.get("jupyter", {}).get("source_hidden"), "collapsed"
        if checked:
            assert f"assert check_{number}(" in solution[0].source, "the tests run the solution"
