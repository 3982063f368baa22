"""Notebook 04's lesson, kept beside it: the *Your turn* task (one greedy step of ThiNet), its
exercises' answers and its highlights. The notebook binds them to its run's objects."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from course_utils.grading import Case, Check, Task
from course_utils.harness.highlights import Highlight
from course_utils.metrics import count_parameters
from course_utils.plans import kept_count
from course_utils.surgery import remove_filters
from course_utils.thinet import thinet_scaling, thinet_selection

RIDGE = 1e-8  # the report's own fix (paper 04), as in course_utils.thinet.thinet_scaling

# ---------------------------------------------------------------- Your turn: one greedy step of ThiNet


def thinet_next_channel(terms: torch.Tensor, target: torch.Tensor, kept: list[int]) -> int:
    """The course's answer: the channel whose own scaled term best fits what the kept channels,
    least-squares scaled (`thinet_scaling`), still miss of the target."""
    x, y = terms.double(), target.double()
    residual = y - x[:, kept] @ thinet_scaling(x[:, kept], y) if kept else y
    gain = (x.T @ residual) ** 2 / ((x ** 2).sum(0) + RIDGE)
    gain[kept] = -math.inf
    return int(gain.argmax())


def _fit_error(terms: torch.Tensor, target: torch.Tensor, kept: list[int]) -> float:
    """Squared error of rebuilding target from the kept channels' terms, least-squares scaled."""
    if not kept:
        return float((target ** 2).sum())
    x = terms[:, kept]
    return float(((target - x @ thinet_scaling(x, target)) ** 2).sum())


def _compare_channel(answer, expected: int, arguments) -> str | None:
    """Judged by the error a choice leaves, so that a tie with the course's choice passes."""
    terms, target, kept = (argument.double() if torch.is_tensor(argument) else argument for argument in arguments)
    if isinstance(answer, torch.Tensor) and answer.numel() == 1:
        answer = int(answer.item())
    if isinstance(answer, bool) or not isinstance(answer, int):
        return f"return one channel number (an int), not {type(answer).__name__}"
    if not 0 <= answer < terms.shape[1]:
        return f"channel {answer} does not exist (there are {terms.shape[1]})"
    if answer in kept:
        return f"channel {answer} is already kept"
    mine, best = _fit_error(terms, target, [*kept, answer]), _fit_error(terms, target, [*kept, expected])
    if mine <= best * (1 + 1e-9) + 1e-12:
        return None
    return f"adding channel {answer} leaves {mine / best:.3g} times the error the best channel leaves"


def _large_and_weakly_aligned() -> tuple[torch.Tensor, torch.Tensor]:
    """A target that is not the sum of the terms, a channel that copies it, and a channel 60
    times larger that barely follows it: unscaled, (x . r)^2 favours the large one."""
    generator = torch.Generator().manual_seed(0)
    aligned = 0.3 * torch.randn(60, generator=generator)
    target = aligned + 0.02 * torch.randn(60, generator=generator)
    large = 20 * torch.randn(60, generator=generator) + 2.0 * target
    return torch.stack([large, aligned, *torch.randn(60, 3, generator=generator).T], 1), target


def _cases() -> list[Case]:
    generator = torch.Generator().manual_seed(0)
    terms = torch.randn(60, 6, generator=generator) * torch.tensor([1.0, 3.0, 0.5, 2.0, 1.5, 0.8])
    dead = terms.clone()
    dead[:, 2] = 0
    copied = terms.clone()
    copied[:, 5] = 2 * copied[:, 1]  # a channel that copies a kept one: it adds nothing
    return [Case("6 channels, none kept yet", (terms, terms.sum(1), [])),
            Case("6 channels, channels 1 and 3 kept", (terms, terms.sum(1), [1, 3])),
            Case("a dead channel (zero in every sample)", (dead, dead.sum(1), [])),
            Case("a channel that copies a kept one", (copied, copied.sum(1), [1])),
            Case("a large channel weakly aligned with a target that is not the sum", (*_large_and_weakly_aligned(), []))]


TASK = Task("thinet_next_channel", _cases, thinet_next_channel, _compare_channel, fast=(thinet_selection,))

# ---------------------------------------------------------------- the exercises' answers


def channels_kept(channels: int, rate: float) -> Check:
    return Check(kept_count(channels, rate), "channels kept")


def least_squares_scales(kept_terms: torch.Tensor, target: torch.Tensor) -> Check:
    return Check(thinet_scaling(kept_terms, target).tolist(), "least-squares scales", tolerance=1e-4)


def parameter_share_after(model: nn.Module, example: torch.Tensor, plan: dict[str, list[int]]) -> Check:
    share = count_parameters(remove_filters(copy.deepcopy(model), example, plan)) / count_parameters(model)
    return Check(share, "parameters remaining", tolerance=0.02)


HIGHLIGHTS = [
    Highlight("gradient votes at r = 0.4, test accuracy", "gradient_accuracy_r0.4", "accuracy", "62.75%"),
    Highlight("ThiNet (report's rule) at r = 0.4, test accuracy", "thinet_accuracy_r0.4", "accuracy", "60.97%"),
    Highlight("rates where the gradient votes clearly beat ThiNet", "gradient_clear_wins", "count", "4 of 4"),
]
