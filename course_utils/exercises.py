"""Checks for the exercises at the end of every notebook.

    check(answer, expected, "parameters of the pruned net")   # prints, returns True/False

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
