"""The checks of a notebook's parameters cell, in one shared way.

Each notebook's imports cell calls `check_parameters(globals(), NAME=spec, ...)` with a
spec per parameter; every value that breaks its spec is reported in one error that names
the parameter, what it got and what is allowed, before any work is done (a value from
papermill's `-p` or a sweep is caught as early as a typo in the cell).

    check_parameters(globals(), SEED=Number(integer=True),
                     RATIOS=Many(Number(0, 1, open_low=True, open_high=True)),
                     MODELS=Many(Choice("vgg16", "resnet18"), none=True))
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass


@dataclass(frozen=True)
class Number:
    """A real number (or a whole one) in [low, high]; `open_low`/`open_high` exclude an end."""

    low: float | None = None
    high: float | None = None
    integer: bool = False
    open_low: bool = False
    open_high: bool = False
    none: bool = False  # None is allowed (the notebook's default)

    def problem(self, value) -> str | None:
        if value is None:
            return None if self.none else "a value, not None"
        kind = numbers.Integral if self.integer else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
            return self.allowed()
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return self.allowed()
        if self.high is not None and (value >= self.high if self.open_high else value > self.high):
            return self.allowed()
        return None

    def allowed(self) -> str:
        kind = "a whole number" if self.integer else "a finite number"
        low = "" if self.low is None else f"{'>' if self.open_low else '>='} {self.low:g}"
        high = "" if self.high is None else f"{'<' if self.open_high else '<='} {self.high:g}"
        bounds = " and ".join(b for b in (low, high) if b)
        return kind + (f" {bounds}" if bounds else "") + (" (or None)" if self.none else "")


@dataclass(frozen=True)
class Choice:
    """One of the given values."""

    options: tuple
    none: bool = False

    def __init__(self, *options, none: bool = False):
        object.__setattr__(self, "options", options)
        object.__setattr__(self, "none", none)

    def problem(self, value) -> str | None:
        if value is None and self.none or value in self.options:
            return None
        return self.allowed()

    def allowed(self) -> str:
        return "one of " + ", ".join(map(repr, self.options)) + (" (or None)" if self.none else "")


@dataclass(frozen=True)
class Text:
    """A non-empty string."""

    none: bool = False

    def problem(self, value) -> str | None:
        if value is None and self.none or isinstance(value, str) and value:
            return None
        return self.allowed()

    def allowed(self) -> str:
        return "a non-empty string" + (" (or None)" if self.none else "")


@dataclass(frozen=True)
class Many:
    """A non-empty list or tuple whose items each meet `item`, without repeats."""

    item: Number | Choice | Text
    none: bool = False
    unique: bool = True

    def problem(self, value) -> str | None:
        if value is None:
            return None if self.none else self.allowed()
        if not isinstance(value, (list, tuple)) or not value:
            return self.allowed()
        for entry in value:
            if (wrong := self.item.problem(entry)) is not None:
                return f"{self.allowed()}; {entry!r} is not {wrong}"
        if self.unique and len(set(map(repr, value))) < len(value):
            return f"{self.allowed()}, each once"
        return None

    def allowed(self) -> str:
        return (f"a non-empty list of {self.item.allowed()}"
                + (" (or None for the notebook's default)" if self.none else ""))


def check_parameters(namespace: dict, **specs) -> None:
    """Raise one ValueError listing every parameter whose value in `namespace` breaks its spec."""
    problems = []
    for name, spec in specs.items():
        if name not in namespace:
            raise NameError(f"check_parameters: the notebook has no parameter {name}")
        if (problem := spec.problem(namespace[name])) is not None:
            problems.append(f"  {name} = {namespace[name]!r}: must be {problem}")
    if problems:
        raise ValueError("parameters out of range (set them in the parameters cell, or with "
                         "papermill -p NAME VALUE):\n" + "\n".join(problems))
