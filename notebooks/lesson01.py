"""Notebook 01's lesson, kept beside it: the *Your turn* task (the merge penalty), its
exercises' answers and its highlights. The notebook binds them to its run's objects."""

from __future__ import annotations

import torch
from torch import nn

from course_utils.grading import Case, Check, Task, number_off
from course_utils.harness.highlights import Highlight
from course_utils.metrics import count_parameters
from course_utils.superclasses import merge_penalty

# ---------------------------------------------------------------- Your turn: the penalty of merging two classes


def _bits(text: str) -> torch.Tensor:
    return torch.tensor([c == "1" for c in text])


def _cases() -> list[Case]:
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.rand(12, generator=generator) > 0.5 for _ in range(2))
    return [Case("two random response vectors of 12 groups", (a, b)),
            Case("two equal vectors", (_bits("0110100"), _bits("0110100"))),
            Case("a class that responds to no group", (_bits("0000000"), _bits("0110101"))),
            Case("two classes with no group in common", (_bits("1100000"), _bits("0011110"))),
            Case("one class's groups inside the other's", (_bits("0100100"), _bits("1110110")))]


TASK = Task("merge_cost", _cases, merge_penalty, lambda answer, expected, _: number_off(answer, expected, "the penalty", 0))

# ---------------------------------------------------------------- the exercises' answers


def parameter_share(part: nn.Module, whole: nn.Module, what: str) -> Check:
    return Check(count_parameters(part) / count_parameters(whole), what, tolerance=0.02)


def groups_a_class_responds_to(drops: torch.Tensor, label: int) -> Check:
    """The filter groups whose deletion lowers class `label`'s accuracy (drops: groups x classes)."""
    return Check(set((drops[:, label] > 0).nonzero().flatten().tolist()), f"groups class {label} responds to")


def merge_penalty_of(a: torch.Tensor, b: torch.Tensor) -> Check:
    return Check(merge_penalty(a, b), "merge penalty")


HIGHLIGHTS = [
    Highlight("benchmark AlexNet, test accuracy", "benchmark_accuracy", "accuracy", "87.53%"),
    Highlight("hierarchy after retraining, test accuracy", "hierarchy_after_retraining_accuracy", "accuracy", "88.97%"),
    Highlight("hierarchy minus benchmark", "hierarchy_minus_benchmark", "points", "+1.44 points"),
]
