"""The exercise checks, and the shape every notebook's exercises must have."""

import re
from pathlib import Path

import nbformat
import pytest
import torch

from course_utils.exercises import check, check_prediction, check_target
from course_utils.uncertainty import Difference

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


def test_a_prediction_is_judged_and_explained_either_way(capsys):
    choices = ("more", "fewer")
    assert check_prediction(" Fewer", "fewer", "FLOPs", "Late filters are cheap.", choices)
    said = capsys.readouterr().out
    assert "you predicted fewer" in said and "not this time" not in said and "Late filters are cheap." in said
    assert not check_prediction("more", "fewer", "FLOPs", "Late filters are cheap.", choices)
    assert "not this time. Late filters are cheap." in capsys.readouterr().out
    assert not check_prediction(None, "fewer", "FLOPs", "Why.", choices)
    assert "no prediction written" in capsys.readouterr().out
    assert not check_prediction("less", "fewer", "FLOPs", "Why.", choices)  # not one of the choices
    assert "predict one of 'more', 'fewer'" in capsys.readouterr().out
    with pytest.raises(ValueError, match="not one of"):
        check_prediction("more", "equal", "FLOPs", "Why.", choices)


def test_a_design_target_needs_its_whole_interval_above_the_bar_and_every_requirement(capsys):
    assert check_target("L1 beaten", Difference(0.02, 0.005, 0.035), at_least=0.0)
    assert "met, +2.00 (+0.50 to +3.50) points" in capsys.readouterr().out
    assert not check_target("L1 beaten", Difference(0.02, -0.005, 0.045), at_least=0.0)
    assert "not shown yet" in capsys.readouterr().out
    assert not check_target("at most 1.5 points lost", Difference(-0.03, -0.04, -0.02), at_least=-0.015)
    assert "not met" in capsys.readouterr().out
    assert not check_target("at most 1.5 points lost", Difference(-0.005, -0.01, 0.0), at_least=-0.015,
                            also={"at least 40% of the FLOPs removed": False})
    said = capsys.readouterr().out
    assert "the difference is there" in said and "not yet: at least 40% of the FLOPs removed" in said
    assert check_target("both", Difference(0.0, -0.01, 0.01), at_least=-0.015, also={"40% removed": True})


def test_the_checks_compute_their_answer_and_reject_a_wrong_one(capsys):
    from torch import nn

    from course_utils import checks
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 3, 3, padding=1)).eval()
    x = torch.randn(2, 1, 6, 6)
    nn.init.constant_(net[1].bias, 0.5)  # a batch norm with a shift
    # conv 0 loses 2 of 4 filters: 2 x (9 + 1) weights and biases, 2 x 2 of the norm, 3 x 2 x 9 of conv 2's inputs
    assert checks.parameters_left(40 + 8 + 3 * 4 * 9 + 3 - 20 - 4 - 54, net, x, {"0": [0, 3]})
    assert not checks.parameters_left(40 + 8 + 111, net, x, {"0": [0, 3]})
    assert not checks.zeroing_equals_removing(True, net, x, "0", 2)  # the batch norm's shift still flows on
    assert checks.channels_kept(20, 64, 0.3) and not checks.channels_kept(19, 64, 0.3)  # ceil(64 x 0.3)
    assert checks.kl_divergence_of(0.3681, torch.tensor([0.9, 0.1]), torch.tensor([0.5, 0.5]))
    assert not checks.kl_divergence_of(0.5108, torch.tensor([0.9, 0.1]), torch.tensor([0.5, 0.5]))  # the other order
    assert checks.layer_cut_most("b", {"a": [0], "b": [1, 2]}) and checks.filters_in_plan(3, {"a": [0], "b": [1, 2]}, "n")
    assert checks.conv_flops_left(0.49, 20, 6) and not checks.conv_flops_left(0.7, 20, 6)  # (14/20)^2, not 14/20
    assert "too high" in capsys.readouterr().out


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
        if checked:  # bound to a course_utils.checks function: the visible cell does not compute the answer
            assert any(re.search(rf"^\s*check_{number} = partial\(checks\.\w+,", source, re.M) for source in code), \
                f"check_{number} = partial(checks.<function>, <the run's objects>)"
        solution = [c for c in solutions if c.source.startswith(f"# Solution {number}")]
        assert len(solution) == 1, f"exercise {number} has one solution cell, tagged 'solution'"
        assert solution[0].metadata.get("jupyter", {}).get("source_hidden"), "collapsed"
        if checked:
            assert f"assert check_{number}(" in solution[0].source, "the tests run the solution"
