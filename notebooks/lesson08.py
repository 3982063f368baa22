"""Notebook 08's lesson, kept beside it: the *Your turn* task (a layer's head importance from
its gates' gradients, Michel et al.'s score), its exercises' answers and its highlights. The
notebook binds them to its run's objects."""

from __future__ import annotations

import copy

import torch

from course_utils.grading import Case, Check, Task, tensor_off
from course_utils.harness.highlights import Highlight
from course_utils.head_scores import gate_importance
from course_utils.heads import remove_heads
from course_utils.metrics import count_parameters

# ---------------------------------------------------------------- Your turn: importance from gate gradients


def _cases() -> list[Case]:
    generator = torch.Generator().manual_seed(8)
    mixed = torch.randn(50, 8, generator=generator) * torch.linspace(0.1, 2.0, 8)
    return [Case("3 images, 2 heads, every gradient positive", (torch.tensor([[1.0, 2.0], [3.0, 2.0], [2.0, 2.0]]),)),
            Case("gradients of both signs (a head that helps some images and hurts others)",
                 (torch.tensor([[4.0, -1.0], [-4.0, 1.0], [4.0, -1.0], [-4.0, 1.0]]),)),
            Case("one image, 4 heads", (torch.tensor([[0.5, -0.5, 2.0, 0.0]]),)),
            Case("a dead head (its gradient is always 0)", (torch.tensor([[0.0, 1.0, -2.0], [0.0, -3.0, 1.0]]),)),
            Case("50 images, 8 heads of growing importance", (mixed,))]


def _compare_scores(answer, expected, _) -> str | None:
    return tensor_off(answer, expected, "the heads' scores")


TASK = Task("head_scores_from_gates", _cases, gate_importance, _compare_scores)

# ---------------------------------------------------------------- the exercises' answers


def head_parameters(model, attention: str) -> Check:
    """The parameters one head holds: counted by removing head 0 of `attention` from a copy."""
    smaller = copy.deepcopy(model)
    layer = smaller.get_submodule(attention)
    smaller.set_submodule(attention, remove_heads(layer, [0]))
    return Check(count_parameters(model) - count_parameters(smaller), "parameters of one head", tolerance=0)


def best_single_head_layer(single_head) -> Check:
    """The layer that keeps the most accuracy with one head left (section 3's table)."""
    return Check(int(single_head["accuracy"].idxmax()), "the layer that needs its other heads least", tolerance=0)


def flops_left(flops_pruned: float, flops_dense: float) -> Check:
    return Check(flops_pruned / flops_dense, "share of the FLOPs left", tolerance=0.01)


HIGHLIGHTS = [
    Highlight("Dense small ViT, test accuracy", "dense_accuracy", "accuracy"),
    Highlight("Heads whose removal alone changes accuracy beyond noise", "heads_beyond_noise", "count"),
    Highlight("Half the heads pruned by importance, test accuracy", "importance_half_accuracy", "accuracy"),
    Highlight("Realised share of the FLOP speed-up, batch 1 (Torch-Pruning ViT-B/16: 34%)",
              "realised_share_b1", "share", paper="34% (Torch-Pruning, ViT-B/16, A5000)"),
]
