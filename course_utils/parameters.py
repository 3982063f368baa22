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
        if isinstance(value, bool) or not isinstance(value, kind):
            return self.allowed()
        if not isinstance(value, numbers.Integral) and not math.isfinite(value):
            return self.allowed()
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return self.allowed()
        if self.high is not None and (value >= self.high if self.open_high else value > self.high):
            return self.allowed()
        return None

    def allowed(self) -> str:
        kind = "a whole number" if self.integer else "a finite number"
        shown = (lambda bound: f"{int(bound):,}") if self.integer else (lambda bound: f"{bound:g}")
        low = "" if self.low is None else f"{'>' if self.open_low else '>='} {shown(self.low)}"
        high = "" if self.high is None else f"{'<' if self.open_high else '<='} {shown(self.high)}"
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
    """A non-empty list or tuple whose items each meet `item`, without repeats (`unique`),
    of exactly `length` items when that is given."""

    item: Number | Choice | Text
    none: bool = False
    unique: bool = True
    length: int | None = None

    def problem(self, value) -> str | None:
        if value is None:
            return None if self.none else self.allowed()
        if not isinstance(value, (list, tuple)) or not value or self.length not in (None, len(value)):
            return self.allowed()
        for entry in value:
            if (wrong := self.item.problem(entry)) is not None:
                return f"{self.allowed()}; {entry!r} is not {wrong}"
        if self.unique and len(set(map(repr, value))) < len(value):
            return f"{self.allowed()}, each once"
        return None

    def allowed(self) -> str:
        return (f"a {'non-empty ' if self.length is None else ''}list of "
                f"{self.length or ''}{' ' if self.length else ''}{self.item.allowed()}"
                + (" (or None for the notebook's default)" if self.none else ""))


@dataclass(frozen=True)
class Named:
    """A non-empty dict from names (non-empty strings) to values that each meet `item`."""

    item: Number | Choice | Text | Many

    def problem(self, value) -> str | None:
        if not isinstance(value, dict) or not value:
            return self.allowed()
        for key, entry in value.items():
            if not isinstance(key, str) or not key:
                return f"{self.allowed()}; {key!r} is not a name"
            if (wrong := self.item.problem(entry)) is not None:
                return f"{self.allowed()}; {key!r}: {entry!r} is not {wrong}"
        return None

    def allowed(self) -> str:
        return f"a non-empty dict of names to {self.item.allowed()}"


# what every notebook's parameters cell holds, checked the same way everywhere
COMMON = {
    "PROFILE": Choice("auto", "smoke", "shapes", "quick", "paper"),
    "DEVICE": Choice("cuda", "mps", "cpu", none=True),
    "SEED": Number(0, 2**32 - 1, integer=True),
    "RESULTS_FILE": Text(none=True),  # a path, or None in an interactive session
}


def check_parameters(namespace: dict, **specs) -> None:
    """Raise one ValueError listing every parameter whose value in `namespace` breaks its spec;
    the parameters every notebook has (`COMMON`: PROFILE, DEVICE, SEED, RESULTS_FILE) are
    checked too, wherever the namespace holds them."""
    problems = []
    specs = {**{name: spec for name, spec in COMMON.items() if name in namespace}, **specs}
    for name, spec in specs.items():
        if name not in namespace:
            raise NameError(f"check_parameters: the notebook has no parameter {name}")
        if (problem := spec.problem(namespace[name])) is not None:
            shown = repr(namespace[name])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            problems.append(f"  {name} = {shown}: must be {problem}")
    if problems:
        raise ValueError("parameters out of range (set them in the parameters cell, or with "
                         "papermill -p NAME VALUE):\n" + "\n".join(problems))
