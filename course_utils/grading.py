"""Judging the learner's work: the *Your turn* functions and the exercises' answers.

    my_step = check_task(lesson.TASK, my_step)   # the learner's function, or the course's
    check(answer_1, expected, "parameters left")  # "correct", "close", or "not yet"

A task runs the learner's function on small cases and on the edge cases that matter,
compares each answer with the course's own (never showing the course's code or values), and
**returns the function the notebook uses next**: the learner's when it passes every case,
the course's otherwise (said in a box). `show_case` prints a case's inputs; when the
learner's code raises, the verdict names their line. `reveal` shows how the course made a
step fast, once the learner's own version passed (or when asked with `now=True`).

An exercise's answer is judged without narrowing it by more than "close": a number is
"correct", "close" (within a tenth) or "not yet", a collection or a name "correct" or "not
yet", a yes-or-no answer only together with its reason; a string or a boolean where a number
is asked is refused, and after `ATTEMPTS` wrong answers a check stops judging (reread the
section, or restart the kernel): guessing is slower than thinking.
"""

from __future__ import annotations

import copy
import html
import inspect
import math
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

ATTEMPTS = 3  # wrong answers a check judges before it asks for a second look instead
CLOSE = 0.1  # a number within this share of the answer is "close"


# ---------------------------------------------------------------- showing a verdict


def _box(title: str, body: str, passed: bool | None) -> None:
    """A verdict a learner sees at a glance: a coloured box in Jupyter (green passed, red not
    yet, orange neither), its words as plain text everywhere else (papermill, a terminal)."""
    colour = {True: "#2e7d32", False: "#c62828", None: "#ef6c00"}[passed]
    mark = {True: "✔", False: "✘", None: "●"}[passed]
    text = f"{mark} {title}: {body}"
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        print(text)
        return
    display({"text/plain": text,
             "text/html": f'<div style="border-left: 6px solid {colour}; padding: 0.4em 0.8em; margin: 0.3em 0; '
                          f'background: {colour}14"><b>{mark} {html.escape(title)}</b>: {html.escape(body)}</div>'},
            raw=True)


# ---------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Case:
    name: str  # what the case is, as a message names it
    arguments: tuple


@dataclass
class Task:
    """A *Your turn* task: its cases (built afresh for every check), the course's function
    (the reference each answer is compared with, and what the notebook uses when the
    learner's does not pass), how far off an answer is (`compare(answer, expected,
    arguments)` -> what is off, or None), and the optimised code `reveal` may show."""

    name: str
    cases: Callable[[], list[Case]]
    reference: Callable
    compare: Callable
    fast: tuple[Callable, ...] = ()
    passed: bool = field(default=False, init=False)


def check_task(task: Task, candidate: Callable) -> Callable:
    """Run `candidate` on every case of `task` and say so; return the function the notebook
    goes on with: `candidate` when it passed every case, else the course's `task.reference`."""
    task.passed = False
    instead = f"the notebook goes on with the course's {_name(task.reference)}"
    cases = task.cases()
    for case in cases:
        try:
            answer = candidate(*copy.deepcopy(case.arguments))
        except NotImplementedError:
            _box(task.name, f"not implemented yet; {instead}, and your function takes its place once it passes",
                 None)
            return task.reference
        except Exception as error:  # noqa: BLE001 (the learner's code: say what it raised and where)
            _box(task.name, f"on {case.name} your function raised {type(error).__name__}: {error}"
                            f"{_your_line(error)}; {instead}", False)
            return task.reference
        off = task.compare(answer, task.reference(*copy.deepcopy(case.arguments)), case.arguments)
        if off is not None:
            _box(task.name, f"not yet: on {case.name}, {off} (show_case(lesson.TASK, {cases.index(case)}) prints its "
                            f"inputs); {instead}", False)
            return task.reference
    task.passed = True
    _box(task.name, f"passed all {len(cases)} cases ({'; '.join(c.name for c in cases)}): the notebook "
                    f"runs on your function from here", True)
    return candidate


def _name(function: Callable) -> str:
    return getattr(function, "__qualname__", None) or type(function).__name__


def _your_line(error: Exception) -> str:
    """Where in the learner's own code (a notebook cell, not the course's) the error arose."""
    ours = __name__.rsplit(".", 1)[0]
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if ours not in frame.filename.replace("/", ".") and "site-packages" not in frame.filename]
    if not frames:
        return ""
    frame = frames[-1]
    return f" (your line {frame.lineno}: {frame.line.strip()!r})" if frame.line else f" (your line {frame.lineno})"


def show_case(task: Task, index: int) -> None:
    """Print the inputs of case `index` of `task`, to try the learner's function on by hand;
    never the answer the course expects."""
    cases = task.cases()
    if not 0 <= index < len(cases):
        raise ValueError(f"{task.name} has cases 0 to {len(cases) - 1}, not {index}")
    case = cases[index]
    print(f"case {index} of {task.name}: {case.name}")
    for number, argument in enumerate(case.arguments):
        print(f"  argument {number}: {_shown(argument)}")


def _shown(value) -> str:
    if torch.is_tensor(value):
        return f"tensor of shape {tuple(value.shape)} ({value.dtype}):\n{value}"
    if isinstance(value, nn.Module):
        return f"{value!r} with parameters {[tuple(p.shape) for p in value.parameters()]}"
    return repr(value)


def reveal(task: Task, now: bool = False) -> None:
    """How the course made the task's step fast: the source of `task.fast`, shown once the
    learner's own function passed (or at once with `now=True`), so that the answer is never on
    screen before the learner has tried."""
    if not (task.passed or now):
        _box(f"{task.name}: how we made it fast", "shown once your function passes its check "
                                                  "(or call reveal(lesson.TASK, now=True))", None)
        return
    for function in task.fast:
        print(f"# {function.__module__}.{function.__qualname__}: how the course computes it, fast\n")
        print(inspect.getsource(function))


# ---------------------------------------------------------------- how far off a function's answer is


def tensor_off(answer, expected: torch.Tensor, what: str, tolerance: float = 1e-4) -> str | None:
    """What differs between two tensors: type, shape, non-finite entries, values (how many are
    off, and a constant factor when every entry is off by the same one)."""
    if not torch.is_tensor(answer):
        return f"{what}: a {type(answer).__name__} where a tensor should be"
    if tuple(answer.shape) != tuple(expected.shape):
        return f"{what}: shape {tuple(answer.shape)} where it should be {tuple(expected.shape)}"
    answer, expected = answer.detach().double().cpu(), expected.detach().double().cpu()
    if not torch.isfinite(answer).all():
        return f"{what}: {int((~torch.isfinite(answer)).sum())} NaN or infinite entries"
    gap = (answer - expected).abs()
    scale = expected.abs().max().item() or 1.0
    if gap.max().item() <= tolerance * scale:
        return None
    factor = _constant_factor(answer, expected)
    if factor is not None:
        return f"{what}: every entry {factor:.3g} times what it should be"
    return f"{what}: {int((gap > tolerance * scale).sum())} of {gap.numel()} entries off"


def _constant_factor(answer: torch.Tensor, expected: torch.Tensor) -> float | None:
    nonzero = expected.abs() > 1e-12
    if not nonzero.any() or (answer[~nonzero].abs() > 1e-12).any():
        return None
    ratios = answer[nonzero] / expected[nonzero]
    same = torch.allclose(ratios, ratios[0], rtol=1e-4) and abs(ratios[0].item()) > 1e-9
    return ratios[0].item() if same else None


def number_off(answer, expected: float, what: str, tolerance: float = 1e-4) -> str | None:
    """What is wrong with a function's number: its type, a non-finite value, or its value."""
    if isinstance(answer, torch.Tensor) and answer.numel() == 1:
        answer = answer.item()
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        return f"{what}: a {type(answer).__name__} where a number should be"
    if not math.isfinite(answer):
        return f"{what}: {answer}"
    if math.isclose(answer, expected, rel_tol=tolerance, abs_tol=1e-9):
        return None
    return f"{what}: not the value it should be" + (" (it should be zero here)" if expected == 0 else "")


# ---------------------------------------------------------------- exercises


class Check:
    """An exercise's check, bound to the run's own answer: `check_1 = Check(expected, what)`,
    then `check_1(answer_1)`. It counts wrong answers and stops judging after `ATTEMPTS`."""

    def __init__(self, expected, what: str, tolerance: float = 1e-3, reason: str | None = None,
                 reasons: tuple[str, ...] = ()):
        self.expected, self.what, self.tolerance = expected, what, tolerance
        self.reason, self.reasons = reason, reasons
        self.wrong = 0

    def __call__(self, answer, because: str | None = None) -> bool:
        if self.wrong >= ATTEMPTS:
            _box(self.what, f"{ATTEMPTS} answers were not it: reread the section and the cells above it "
                            "(restart the kernel to be judged again)", None)
            return False
        verdict = judged(answer, self.expected, self.tolerance)
        if verdict is None and isinstance(self.expected, bool) and self.reasons:
            verdict = self._reason_verdict(because)
        if verdict is None:
            _box(self.what, "correct", True)
            return True
        if answer is not None:
            self.wrong += 1
        _box(self.what, verdict, None if answer is None or verdict.startswith("close") else False)
        return False

    def _reason_verdict(self, because: str | None) -> str | None:
        """A yes or no is judged with its reason: a coin flip does not pass."""
        if because is None:
            return f"give the reason too: check(answer, because=one of {', '.join(map(repr, self.reasons))})"
        if because not in self.reasons:
            return f"the reason must be one of {', '.join(map(repr, self.reasons))}"
        return None if because == self.reason else "not yet: the answer and its reason do not both hold"


def check(answer, expected, what: str, tolerance: float = 1e-3) -> bool:
    """Judge one answer at once (see `Check` for an exercise's bound check): prints the verdict,
    returns it."""
    return Check(expected, what, tolerance)(answer)


def judged(answer, expected, tolerance: float = 1e-3) -> str | None:
    """None when `answer` is `expected`, else what a learner may be told: "close" for a number
    within a tenth, "not yet" otherwise (never which way, nor by how much), or that the answer
    is of the wrong kind."""
    answer, expected = _plain(answer), _plain(expected)
    if answer is None:
        return "no answer yet (replace the None)"
    if isinstance(expected, bool):
        if not isinstance(answer, bool):
            return f"a yes or no (True or False) is asked, not a {type(answer).__name__}"
        return None if answer == expected else "not yet"
    if isinstance(expected, (int, float)):
        if isinstance(answer, (bool, str)) or not isinstance(answer, (int, float)):
            return f"a number is asked here, not a {type(answer).__name__}"
        if math.isclose(answer, expected, rel_tol=tolerance, abs_tol=tolerance * 1e-3):
            return None
        near = abs(answer - expected) <= CLOSE * abs(expected)
        return "close, but not it yet" if near else "not yet"
    if isinstance(expected, str):
        if not isinstance(answer, str):
            return f"a name (a string) is asked here, not a {type(answer).__name__}"
        return None if answer.strip() == expected else "not yet"
    if isinstance(expected, (list, tuple)):
        if not isinstance(answer, (list, tuple)):
            return f"a list of {len(expected)} values, in order, is asked here"
        if len(answer) == len(expected) and all(judged(a, e, tolerance) is None for a, e in zip(answer, expected)):
            return None
        return "not yet"
    if isinstance(expected, Iterable):
        if isinstance(answer, (str, bool)) or not isinstance(answer, Iterable):
            return "a collection (a set or a list) is asked here"
        return None if {_plain(a) for a in answer} == {_plain(e) for e in expected} else "not yet"
    return None if answer == expected else "not yet"


def _plain(value):
    if torch.is_tensor(value):
        return value.item() if value.numel() == 1 else value.tolist()
    if hasattr(value, "item") and not isinstance(value, (list, tuple, set, dict, str)):
        return value.item()
    return value


def check_prediction(guess, outcome: str, what: str, because: str, choices: tuple[str, ...]) -> bool:
    """A guess written down before the cell that computes `outcome` (one of `choices`): prints
    whether it held and, either way, `because` (the run's own numbers and reason), so that a
    wrong guess teaches as much as a right one. Returns whether it held."""
    if outcome not in choices:
        raise ValueError(f"outcome {outcome!r} is not one of {choices}")
    if guess is None:
        _box(what, f"no prediction written (one of {', '.join(choices)}); this run: {outcome}. {because}", None)
        return False
    if str(guess).strip().lower() not in choices:
        _box(what, f"predict one of {', '.join(repr(c) for c in choices)}, not {guess!r}; this run: {outcome}. "
                   f"{because}", None)
        return False
    held = str(guess).strip().lower() == outcome
    _box(what, f"you predicted {str(guess).strip().lower()}, and this run says {outcome}"
               f"{'' if held else ': not this time'}. {because}", held)
    return held


def check_target(what: str, difference, at_least: float, also: dict[str, bool] | None = None) -> bool:
    """A design target on the learner's own model: met when the whole 95% interval of
    `difference` (a `uncertainty.Difference`, a minus b as a fraction of the images) lies above
    `at_least`, and every requirement in `also` ({what it asks: whether it holds}) holds. Says
    met, or which part is not, and returns whether it is met."""
    unmet = [requirement for requirement, holds in (also or {}).items() if not holds]
    if difference.low > at_least and not unmet:
        _box(what, f"met, {difference} (the whole interval above {100 * at_least:+.1f})", True)
        return True
    if difference.high <= at_least:
        verdict = f"not met, {difference}: the whole interval is at or below {100 * at_least:+.1f}"
    elif difference.low <= at_least:
        verdict = (f"not shown yet, {difference}: the interval reaches {100 * at_least:+.1f} or below, so this "
                   "run cannot say it is above")
    else:
        verdict = f"the difference is there, {difference}"
    _box(what, verdict + "".join(f"; not yet: {requirement}" for requirement in unmet), False)
    return False


def check_ratio_target(what: str, ratio, at_most: float) -> bool:
    """A design target on a ratio that must stay low (a pruned model's perplexity over the dense
    one's, `uncertainty.Ratio`): met when its whole 95% interval lies below `at_most`."""
    if ratio.high < at_most:
        _box(what, f"met, {ratio} (the whole interval below {at_most:g}x)", True)
        return True
    if ratio.low >= at_most:
        verdict = f"not met, {ratio}: the whole interval is at or above {at_most:g}x"
    else:
        verdict = f"not shown yet, {ratio}: the interval reaches {at_most:g}x, so this run cannot say it is below"
    _box(what, verdict, False)
    return False


def lesson_module(number: str):
    """The module of notebook `number`'s lesson (notebooks/lessonNN.py: its task, its exercises'
    answers and its highlights), installed with the course as `course_lessons.lessonNN`."""
    import importlib

    return importlib.import_module(f"course_lessons.lesson{number}")
