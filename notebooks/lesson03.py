"""Notebook 03's lesson, kept beside it: the *Your turn* task (the KL score of one filter), its
exercises' answers and its highlights. The notebook binds them to its run's objects."""

from __future__ import annotations

import torch

from course_utils.grading import Case, Check, Task, number_off
from course_utils.harness.highlights import Highlight
from course_utils.scores import kl_divergence, kl_layer_fast

# ---------------------------------------------------------------- Your turn: the score of one filter


def kl_score(logits: torch.Tensor, logits_without: torch.Tensor) -> torch.Tensor:
    """The course's answer: the mean over images of KL[softmax(logits) || softmax(logits_without)]."""
    return kl_divergence(logits, logits_without).mean()


def _cases() -> list[Case]:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 10, generator=generator)
    moved = logits + 0.8 * torch.randn(8, 10, generator=generator)
    confident = logits.clone()
    confident[:, 3] += 120.0  # a network sure of class 3: exp() of these overflows a float
    return [Case("8 images, 10 classes", (logits, moved)),
            Case("a filter whose removal changes nothing", (logits, logits.clone())),
            Case("one image", (logits[:1], moved[:1])),
            Case("a network sure of its class (logits 120 apart)", (confident, moved))]


TASK = Task("kl_score", _cases, kl_score, lambda answer, expected, _: number_off(answer, expected, "the score"),
            fast=(kl_divergence, kl_layer_fast))

# ---------------------------------------------------------------- the exercises' answers


def filters_in_plan(plan: dict[str, list[int]], what: str) -> Check:
    return Check(sum(len(channels) for channels in plan.values()), what)


def layer_cut_most(plan: dict[str, list[int]]) -> Check:
    return Check(max(plan, key=lambda layer: len(plan[layer])), "the layer cut most")


def kl_divergence_of(p: torch.Tensor, q: torch.Tensor) -> Check:
    return Check((p * (p / q).log()).sum(), "KL[p || q]")


HIGHLIGHTS = [
    Highlight("Algorithm 1 (KL), half the filters, test accuracy", "kl_pruned_accuracy", "accuracy"),
    Highlight("FLOPs cut by Algorithm 1", "kl_flops_reduction", "ratio", "3.18x (ImageNet)"),
    Highlight("KL beats ThiNet, levels without fine-tuning", "kl_beats_thinet_no_finetuning", "count", "KL best (Figure 2)"),
]
