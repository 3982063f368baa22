"""Checks for the exercises at the end of every notebook.

    check(answer, expected, "parameters of the pruned net")   # prints, returns True/False
    check_prediction(guess, "fewer", "FLOPs at equal filters", because, choices=("more", "fewer"))
    check_target("yours against L1 at -60% FLOPs", paired_difference(...), at_least=0.0)

`expected` is always computed by the notebook's own run, never stored. The message says
"correct", or what is off (too high or too low and by how much, which items are missing
or extra) without giving the answer away.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


def check(answer, expected, what: str, tolerance: float = 1e-3) -> bool:
    """Compare a student's answer with the run's own value; print the verdict, return it.
    Numbers agree within a relative `tolerance`; lists and tuples entry by entry, in
    order; sets as sets (order does not matter)."""
    verdict = _compare(_plain(answer), _plain(expected), tolerance)
    print(f"{what}: {'correct' if verdict is None else 'not yet, ' + verdict}")
    return verdict is None


def check_prediction(guess, outcome: str, what: str, because: str, choices: tuple[str, ...]) -> bool:
    """A guess the student wrote down before the cell that computes `outcome` (one of
    `choices`): prints whether it held and, either way, `because` (the run's own numbers and
    reason), so that a wrong guess teaches as much as a right one. Returns whether it held."""
    if outcome not in choices:
        raise ValueError(f"outcome {outcome!r} is not one of {choices}")
    if guess is None:
        print(f"{what}: no prediction written (one of {', '.join(choices)}); this run: {outcome}. {because}")
        return False
    if str(guess).strip().lower() not in choices:
        print(f"{what}: predict one of {', '.join(repr(c) for c in choices)}, not {guess!r}; this run: {outcome}. {because}")
        return False
    held = str(guess).strip().lower() == outcome
    print(f"{what}: you predicted {str(guess).strip().lower()}, and this run says {outcome}"
          f"{'' if held else ': not this time'}. {because}")
    return held


def check_target(what: str, difference, at_least: float, also: dict[str, bool] | None = None) -> bool:
    """A design target on the student's own model: met when the whole 95% interval of
    `difference` (a `uncertainty.Difference`, a minus b as a fraction of the images) lies above
    `at_least`, and every requirement in `also` ({what it asks: whether it holds}) holds. Prints
    met, or which part is not, and returns whether it is met."""
    unmet = [requirement for requirement, holds in (also or {}).items() if not holds]
    if difference.low > at_least and not unmet:
        print(f"{what}: met, {difference} (the whole interval above {100 * at_least:+.1f})")
        return True
    if difference.high <= at_least:
        verdict = f"not met, {difference}: the whole interval is at or below {100 * at_least:+.1f}"
    elif difference.low <= at_least:
        verdict = (f"not shown yet, {difference}: the interval reaches {100 * at_least:+.1f} or below, so this "
                   "run cannot say it is above")
    else:
        verdict = f"the difference is there, {difference}"
    print(f"{what}: {verdict}" + "".join(f"; not yet: {requirement}" for requirement in unmet))
    return False


def _plain(value):
    if torch.is_tensor(value):
        return value.item() if value.numel() == 1 else value.tolist()
    if hasattr(value, "item") and not isinstance(value, (list, tuple, set, dict, str)):
        return value.item()
    return value


def _compare(answer, expected, tolerance: float) -> str | None:
    if answer is None:
        return "no answer yet (replace the None)"
    if isinstance(expected, bool) or isinstance(answer, bool):
        return None if answer == expected else "the other way round"
    if isinstance(expected, (int, float)):
        if not isinstance(answer, (int, float)):
            return f"expected a number, got {type(answer).__name__}"
        if math.isclose(answer, expected, rel_tol=tolerance, abs_tol=tolerance * 1e-3):
            return None
        off = (answer - expected) / abs(expected) if expected else math.inf
        return (f"{'too high' if answer > expected else 'too low'}"
                + (f" by {abs(off):.0%}" if math.isfinite(off) else ""))
    if isinstance(expected, (list, tuple)):
        answer = _plain(answer)
        if not isinstance(answer, (list, tuple)):
            return f"expected {len(expected)} values in order, got {type(answer).__name__}"
        if len(answer) != len(expected):
            return f"expected {len(expected)} values, got {len(answer)}"
        wrong = [i for i, (a, e) in enumerate(zip(answer, expected))
                 if _compare(_plain(a), _plain(e), tolerance) is not None]
        return None if not wrong else f"entries {wrong} are off"
    if isinstance(expected, Iterable) and not isinstance(expected, str):
        if not isinstance(answer, Iterable) or isinstance(answer, str):
            return f"expected a collection, got {type(answer).__name__}"
        answer, expected = set(_plain(a) for a in answer), set(_plain(e) for e in expected)
        missing, extra = len(expected - answer), len(answer - expected)
        if not missing and not extra:
            return None
        return f"{len(expected & answer)} right, {missing} missing, {extra} that should not be there"
    return None if answer == expected else "not the expected answer"
