"""Notebook 07's lesson, kept beside it: the *Your turn* task (how many filters a layer keeps,
rounded for the hardware), its exercises' answers and its highlights. The notebook binds them
to its run's objects."""

from __future__ import annotations

import torch
from torch import nn

from course_utils.grading import Case, Check, Task, number_off
from course_utils.harness.highlights import Highlight
from course_utils.metrics import count_flops
from course_utils.plans import balanced_count

# ---------------------------------------------------------------- Your turn: filters kept, rounded


def _cases() -> list[Case]:
    return [Case("100 filters, share 0.3, multiples of 8", (100, 0.3, 8)),
            Case("64 filters, half removed, no rounding", (64, 0.5, 1)),
            Case("a harsh share on a small layer (3 filters, 0.9)", (3, 0.9, 1)),
            Case("a multiple larger than the layer (12 filters, multiples of 16)", (12, 0.5, 16)),
            Case("what is kept already a multiple (48 filters, share 0.25, multiples of 4)", (48, 0.25, 4)),
            Case("a share too small to remove any (7 filters, 0.05, multiples of 4)", (7, 0.05, 4))]


def _compare_count(answer, expected, _) -> str | None:
    if isinstance(answer, float) and answer.is_integer():
        answer = int(answer)
    if isinstance(answer, bool) or not isinstance(answer, int):
        return f"return a whole number of filters (an int), not {type(answer).__name__}"
    return number_off(answer, expected, "the filters kept", 0)


TASK = Task("kept_filters", _cases, balanced_count, _compare_count)

# ---------------------------------------------------------------- the exercises' answers


def conv_flops_left(channels: int, removed: int, size: int = 8) -> Check:
    """The share of a 3x3 conv's FLOPs (channels in and out) left when `removed` of its
    filters go and as many of its inputs, counted on two real convs."""
    dense = nn.Conv2d(channels, channels, 3, padding=1)
    smaller = nn.Conv2d(channels - removed, channels - removed, 3, padding=1)
    image = torch.zeros(1, channels, size, size)
    return Check(count_flops(smaller, image[:, :channels - removed]) / count_flops(dense, image),
                 "share of the FLOPs left", tolerance=0.01)


def slowest_to_fall(breakdown) -> Check:
    return Check(breakdown["pruned / dense"].idxmax(), "the operator whose time fell least")


def balanced_filters_kept(channels: int, share: float, unit: int) -> Check:
    return Check(balanced_count(channels, share, unit), "filters kept")


HIGHLIGHTS = [
    Highlight("VGG-16 at -70% of the filters: FLOPs speed-up", "vgg16_cut70_flops_speedup", "ratio"),
    Highlight("VGG-16 at -70% of the filters: latency speed-up, batch 1", "vgg16_cut70_b1_latency_speedup", "ratio"),
]
