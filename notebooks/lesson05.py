"""Notebook 05's lesson, kept beside it: the *Your turn* task (the Taylor score of a layer's
filters), its exercises' answers and its highlights. The notebook binds them to its run's
objects."""

from __future__ import annotations

import torch
from torch import nn

from course_utils.grading import Case, Check, Task, tensor_off
from course_utils.graph import ModelGraph
from course_utils.harness.highlights import Highlight
from course_utils.reduction import reducible_filters
from course_utils.scores import channel_ends, taylor

# ---------------------------------------------------------------- Your turn: the Taylor score


def taylor_score(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """The course's answer: per filter, the mean over images of |the mean over the map's
    positions of activation x gradient| (Molchanov et al., eq. 8), unnormalised."""
    return (activation * gradient).mean((2, 3)).abs().mean(0)


def _cases() -> list[Case]:
    generator = torch.Generator().manual_seed(0)
    activation, gradient = torch.randn(4, 3, 5, 5, generator=generator), torch.randn(4, 3, 5, 5, generator=generator)
    dead = activation.clone()
    dead[:, 1] = 0
    opposite = activation.clone()
    opposite[1] = activation[0]
    both_ways = gradient.clone()
    both_ways[1] = -gradient[0]  # image 1's loss moves against image 0's
    return [Case("4 images, 3 filters, 5 x 5 maps", (activation, gradient)),
            Case("a dead filter (its map zero everywhere)", (dead, gradient)),
            Case("one image", (activation[:1], gradient[:1])),
            Case("two images whose losses move in opposite directions", (opposite[:2], both_ways[:2])),
            Case("1 x 1 maps", (activation[:, :, :1, :1], gradient[:, :, :1, :1]))]


TASK = Task("taylor_score", _cases, taylor_score, lambda answer, expected, _: tensor_off(answer, expected, "the scores"),
            fast=(taylor,))

# ---------------------------------------------------------------- the exercises' answers


def map_read_at(model: nn.Module, conv: str) -> Check:
    return Check(channel_ends(model)[conv], f"where {conv}'s map is read")


def taylor_before_normalisation(contributions: torch.Tensor, index: int = 0) -> Check:
    """Filter `index`'s score from per-image contributions (images x filters: each image's spatial
    mean of activation x gradient)."""
    return Check(contributions.abs().mean(0)[index], "Taylor score before normalisation")


def filters_in_one_cut(model: nn.Module, example: torch.Tensor, step: float) -> Check:
    return Check(round(step * reducible_filters(ModelGraph(model, example))), "filters in one cut")


HIGHLIGHTS = [
    Highlight("VGG-16, FLOPs after 30% of the reducible filters", "vgg16_flops_diff_percent", "percent", "-39.1%"),
    Highlight("ResNet-18, FLOPs after 30% of the reducible filters", "resnet18_flops_diff_percent", "percent", "-23.5%"),
    Highlight("VGG-16, Taylor minus no cut", "vgg16_taylor_minus_no_cut", "points"),
]
