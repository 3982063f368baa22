"""How sure a number is: intervals for accuracies and for the differences the course compares.

An accuracy measured on n test images is a binomial proportion: `accuracy_interval`
gives its Wilson interval (sound near 0% and 100%, unlike the plain normal one). Two
models scored on the *same* images are compared image by image (`paired_difference`):
most images are right or wrong for both, so the difference is far surer than two
overlapping intervals suggest; runs over the same images are averaged per image first.
`tiers` groups a ranking into sets that these differences cannot tell apart, and
`family_confidence` widens each interval when many are read together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from scipy import stats


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(stats.norm.ppf(0.5 + confidence / 2))


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion `successes / trials`."""
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials >= 1, got {successes}/{trials}")
    z, p = _z(confidence), successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z / (1 + z * z / trials) * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials ** 2))
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_interval(accuracy: float, images: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson interval of an accuracy measured on `images` images."""
    return wilson_interval(round(accuracy * images), images, confidence)


def with_interval(accuracy: float, images: int, confidence: float = 0.95) -> str:
    """'81.23% (80.45-81.99)': an accuracy in percent with its Wilson interval."""
    low, high = accuracy_interval(accuracy, images, confidence)
    return f"{100 * accuracy:.2f}% ({100 * low:.2f}-{100 * high:.2f})"


@dataclass(frozen=True)
class Ratio:
    """How many times a exceeds b (a speed-up, a perplexity ratio), with its confidence interval,
    computed on paired logs so that it never falls below zero."""

    value: float
    low: float
    high: float
    digits: int = 2  # decimals when printed

    @property
    def clear(self) -> bool:
        """True when the interval excludes 1: the pairs tell a and b apart."""
        return self.low > 1 or self.high < 1

    def __str__(self) -> str:
        return f"{self.value:.{self.digits}f}x ({self.low:.{self.digits}f}-{self.high:.{self.digits}f})"


@dataclass(frozen=True)
class Difference:
    """A difference (a - b) with its confidence interval."""

    mean: float
    low: float
    high: float

    @property
    def clear(self) -> bool:
        """True when the interval excludes zero: the runs tell a and b apart."""
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return f"{100 * self.mean:+.2f} ({100 * self.low:+.2f} to {100 * self.high:+.2f}) points"


def paired_difference(correct_a: torch.Tensor, correct_b: torch.Tensor,
                      confidence: float = 0.95) -> Difference:
    """Accuracy of a minus accuracy of b, both judged on the same images (booleans, one per
    image): the normal interval of the mean of the per-image differences.

    Several runs judged on the same images (seeds, budgets) come as runs x images: each
    image's difference is averaged over the runs first, so the interval counts each image
    once. (Concatenating the runs would treat one image seen in k runs as k independent
    images, and the interval would be up to sqrt(k) too narrow.)"""
    if correct_a.shape != correct_b.shape or correct_a.ndim not in (1, 2) or correct_a.shape[-1] < 2:
        raise ValueError("need two equally shaped tensors of per-image outcomes: images, or runs x "
                         "images (at least 2 images)")
    for outcomes in (correct_a, correct_b):
        if not ((outcomes == 0) | (outcomes == 1)).all():
            raise ValueError("paired_difference takes right/wrong per image (booleans, or 0 and 1), "
                             "not predicted classes: pass predictions == labels")
    delta = correct_a.double() - correct_b.double()
    if delta.ndim == 2:
        delta = delta.mean(0)
    mean, spread = delta.mean().item(), delta.std().item() / math.sqrt(len(delta))
    half = _z(confidence) * spread
    return Difference(mean, mean - half, mean + half)


def change_in_difference(after_a: torch.Tensor, after_b: torch.Tensor, before_a: torch.Tensor,
                         before_b: torch.Tensor, confidence: float = 0.95) -> Difference:
    """How much the paired difference a - b changes between two conditions (say before and
    after fine-tuning), all four outcomes judged on the same images: the mean of each image's
    (a - b after) - (a - b before), with its normal interval. Negative: the gap narrows
    (when a leads b)."""
    delta = (after_a.double() - after_b.double()) - (before_a.double() - before_b.double())
    mean, spread = delta.mean().item(), delta.std().item() / math.sqrt(len(delta))
    half = _z(confidence) * spread
    return Difference(mean, mean - half, mean + half)


def family_confidence(comparisons: int, confidence: float = 0.95) -> float:
    """The confidence each of `comparisons` intervals needs so that all of them hold together
    with `confidence` (Bonferroni): with 9 comparisons at 95% each, about one in three runs
    would show a false difference somewhere; at 1 - 0.05 / 9 each, one in twenty."""
    if comparisons < 1:
        raise ValueError(f"comparisons must be at least 1, got {comparisons}")
    return 1 - (1 - confidence) / comparisons


def tiers(order: Sequence[str], differ: Callable[[str, str], bool]) -> list[int]:
    """Tier numbers (1, 1, 2, ...) for names sorted best first: a name joins the tier of the
    one above unless `differ(leader of that tier, name)`, then it opens the next tier."""
    result, leader = [], None
    for name in order:
        if leader is None or differ(leader, name):
            leader = name
            result.append(len(set(result)) + 1)
        else:
            result.append(result[-1])
    return result
