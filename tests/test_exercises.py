"""The exercise checks, and the shape every notebook's exercises must have."""

import re
from pathlib import Path

import nbformat
import pytest
import torch

from course_utils.grading import (ATTEMPTS, Check, check, check_prediction, check_ratio_target, check_target,
                                  lesson_module)
from course_utils.uncertainty import Difference

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_check_says_correct_close_or_not_yet_and_never_which_way(capsys):
    assert check(77, 77, "parameters") and "correct" in capsys.readouterr().out
    assert not check(100, 80, "parameters")
    said = capsys.readouterr().out
    assert "not yet" in said and "high" not in said and "%" not in said
    assert not check(83, 80, "parameters") and "close" in capsys.readouterr().out
    assert not check(None, 3, "x") and "no answer" in capsys.readouterr().out
    assert check(torch.tensor(0.5), 0.5004, "share", tolerance=1e-2)
    assert not check([1, 2, 5], {1, 2, 3, 4}, "groups") and "not yet" in capsys.readouterr().out
    assert check(torch.tensor([3, 1]), {1, 3}, "filters")
    assert check(torch.tensor([0.5, 2.0]), [0.5, 2.0001], "scales")
    assert not check([2.0, 0.5], [0.5, 2.0], "scales")
    assert not check("3", 3, "count") and "a number is asked" in capsys.readouterr().out
    assert not check(True, 1, "count") and "a number is asked" in capsys.readouterr().out


def test_guessing_by_bisection_learns_no_more_than_close_and_stops_after_three_tries(capsys):
    """A learner who halves an interval on what the check says learns at most "close" (within a
    tenth), and after ATTEMPTS wrong answers the check stops judging."""
    exercise = Check(0.4321, "share left")
    verdicts = []
    for guess in (0.5, 0.25, 0.45, 0.4321):
        exercise(guess)
        verdicts.append(capsys.readouterr().out)
    assert ATTEMPTS == 3
    assert all("correct" not in v and ("not yet" in v or "close" in v) for v in verdicts[:3]), verdicts
    assert "reread the section" in verdicts[3] and "correct" not in verdicts[3]
    assert not any(word in "".join(verdicts) for word in ("high", "low", "0.43", "%"))


def test_a_yes_or_no_is_judged_only_with_its_reason(capsys):
    reasons = ("it reads the shift", "zero stays zero")
    exercise = Check(False, "zeroing equals removing", reason=reasons[0], reasons=reasons)
    assert not exercise(False) and "give the reason too" in capsys.readouterr().out
    assert not exercise(False, because="because") and "must be one of" in capsys.readouterr().out
    assert not exercise(False, because=reasons[1]) and "do not both hold" in capsys.readouterr().out
    assert Check(False, "zeroing", reason=reasons[0], reasons=reasons)(False, because=reasons[0])
    assert not Check(False, "zeroing", reason=reasons[0], reasons=reasons)(True, because=reasons[0])


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


def test_the_lessons_checks_compute_their_answer_and_reject_a_wrong_one(capsys):
    from torch import nn

    lesson00, lesson03, lesson04, lesson07 = (lesson_module(n) for n in ("00", "03", "04", "07"))
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 3, 3, padding=1)).eval()
    x = torch.randn(2, 1, 6, 6)
    nn.init.constant_(net[1].bias, 0.5)  # a batch norm with a shift
    # conv 0 loses 2 of 4 filters: 2 x (9 + 1) weights and biases, 2 x 2 of the norm, 3 x 2 x 9 of conv 2's inputs
    assert lesson00.parameters_left(net, x, {"0": [0, 3]})(40 + 8 + 3 * 4 * 9 + 3 - 20 - 4 - 54)
    assert not lesson00.parameters_left(net, x, {"0": [0, 3]})(40 + 8 + 111)
    shift = lesson00.REASONS[0]  # the batch norm's shift still flows on
    assert lesson00.zeroing_equals_removing(net, x, "0", 2)(False, because=shift)
    assert lesson04.channels_kept(64, 0.3)(20) and not lesson04.channels_kept(64, 0.3)(19)  # ceil(64 x 0.3)
    assert lesson03.kl_divergence_of(torch.tensor([0.9, 0.1]), torch.tensor([0.5, 0.5]))(0.3681)
    assert not lesson03.kl_divergence_of(torch.tensor([0.9, 0.1]), torch.tensor([0.5, 0.5]))(0.5108)  # other order
    assert lesson03.layer_cut_most({"a": [0], "b": [1, 2]})("b")
    assert lesson03.filters_in_plan({"a": [0], "b": [1, 2]}, "n")(3)
    assert lesson07.conv_flops_left(20, 6)(0.49) and not lesson07.conv_flops_left(20, 6)(0.7)  # (14/20)^2, not 14/20
    lesson08 = lesson_module("08")
    block = nn.Sequential(nn.MultiheadAttention(16, 4, batch_first=True))  # heads of 4 channels
    # q, k, v: 4 rows of 16 weights and a bias each; the output projection: 4 columns of 16
    assert lesson08.head_parameters(block, "0")(3 * 4 * (16 + 1) + 16 * 4)
    assert not lesson08.head_parameters(block, "0")(4 * 4 * (16 + 1))  # the output bias is not the head's
    lesson09 = lesson_module("09")
    half = torch.ones(512, 128)
    half[:, ::2] = 0  # 32,768 weights kept: values of 4 bytes, column indices of 8, 513 row pointers of 8
    assert lesson09.csr_bytes_ratio(half)((32_768 * 12 + 513 * 8) / (512 * 128 * 4))
    assert not lesson09.csr_bytes_ratio(half)(0.5)  # a zero is not free: the indices cost more than the values
    assert lesson09.weights_zeroed({"a": torch.tensor([[True, False], [False, False]])})(3)


def exercises(notebook):
    """(the exercise list's items, the cells after its heading) of a notebook."""
    cells = nbformat.read(notebook, as_version=4).cells
    heading = [i for i, c in enumerate(cells) if c.cell_type == "markdown"
               and c.source.startswith("## Exercises")]
    assert len(heading) == 1, "one markdown cell starting '## Exercises'"
    items = re.findall(r"^\d+\. (.+?)(?=^\d+\. |\Z)", cells[heading[0]].source, re.M | re.S)
    return items, cells[heading[0] + 1:]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_every_notebook_ends_with_exercises_a_student_can_check(notebook):
    """Each exercise is checked in an answer cell (its check bound to the run's objects by the
    lesson module, so no visible cell computes the answer) or observed (**Expected:**); each has
    one collapsed solution, after its answer cell, which the tests run."""
    items, cells = exercises(notebook)
    assert 3 <= len(items) <= 5
    code = [c for c in cells if c.cell_type == "code"]
    solution_tagged = [c for c in code if "solution" in c.metadata.get("tags", [])]
    for number, item in enumerate(items, 1):
        checked = any(re.search(rf"^\s*check_{number} = lesson\.\w+\(", c.source, re.M) for c in code)
        assert checked or "**Expected:**" in item, \
            f"exercise {number} needs check_{number} = lesson.<function>(<the run's objects>) or an **Expected:** observation"
        solution = [c for c in solution_tagged if c.source.startswith(f"# Solution {number}")]
        assert len(solution) == 1, f"exercise {number} has one solution cell, tagged 'solution'"
        assert solution[0].metadata.get("jupyter", {}).get("source_hidden"), "collapsed"
        if checked:
            assert f"answer_{number}" in item or f"guess_{number}" in item, f"exercise {number} names its answer cell"
            answer = [c for c in code if f"check_{number}(answer_{number}" in c.source
                      and "solution" not in c.metadata.get("tags", [])]
            assert len(answer) == 1, f"exercise {number} has one answer cell calling check_{number}(answer_{number})"
            assert code.index(answer[0]) < code.index(solution[0]), "the answer cell comes before its solution"
            assert f"assert check_{number}(answer_{number}" in solution[0].source, "the tests run the solution"


def test_a_ratio_target_is_met_only_when_the_whole_interval_is_below_it(capsys):
    from course_utils.uncertainty import Ratio

    assert check_ratio_target("2:4", Ratio(1.10, 1.08, 1.12, digits=3), at_most=1.2)
    assert "met, 1.100x (1.080-1.120)" in capsys.readouterr().out
    assert not check_ratio_target("2:4", Ratio(1.18, 1.15, 1.21, digits=3), at_most=1.2)
    assert "not shown yet" in capsys.readouterr().out
    assert not check_ratio_target("2:4", Ratio(1.30, 1.25, 1.35, digits=3), at_most=1.2)
    assert "not met" in capsys.readouterr().out
