"""Notebook 07's lesson, kept beside it: its exercises' answers and its highlights. The
notebook binds them to its run's objects."""

from __future__ import annotations

import torch
from torch import nn

from course_utils.grading import Check
from course_utils.harness.highlights import Highlight
from course_utils.metrics import count_flops
from course_utils.plans import balanced_count

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
