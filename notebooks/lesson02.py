"""Notebook 02's lesson, kept beside it: the *Your turn* task (one step of k-means), its
exercises' answers and its highlights. The notebook binds them to its run's objects."""

from __future__ import annotations

import torch
from torch import nn

from course_utils.compression import compression_rate, kmeans_1d
from course_utils.grading import Case, Check, Task, tensor_off
from course_utils.harness.highlights import Highlight

# ---------------------------------------------------------------- Your turn: one step of k-means


def kmeans_step(values: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """The course's answer: one Lloyd step in one dimension, the centroids in their given order."""
    nearest = (values[:, None] - centroids[None, :]).abs().argmin(1)
    counts = torch.bincount(nearest, minlength=len(centroids)).to(values.dtype)
    sums = torch.zeros_like(centroids).index_add_(0, nearest, values)
    return torch.where(counts > 0, sums / counts.clamp(min=1), centroids)


def _cases() -> list[Case]:
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(200, generator=generator, dtype=torch.float64)
    return [Case("200 weights and 4 centroids", (values, torch.tensor([-1.0, -0.2, 0.3, 1.1], dtype=torch.float64))),
            Case("a centroid no weight is nearest to (an empty cluster)",
                 (values, torch.tensor([-0.5, 0.5, 9.0], dtype=torch.float64))),
            Case("a single centroid", (values, torch.tensor([0.7], dtype=torch.float64))),
            Case("centroids not in sorted order", (values, torch.tensor([0.8, -0.9, 0.1], dtype=torch.float64)))]


TASK = Task("kmeans_step", _cases, kmeans_step,
            lambda answer, expected, _: tensor_off(answer, expected, "the new centroids"), fast=(kmeans_1d,))

# ---------------------------------------------------------------- the exercises' answers


def l1_norm_of_filter(norms: dict[str, torch.Tensor], layer: str, index: int) -> Check:
    return Check(norms[layer][index], f"L1 norm of {layer}'s filter {index}")


def compression_rate_of(weights: int, values: int) -> Check:
    return Check(compression_rate(weights, values), "compression rate")


@torch.no_grad()
def zeroings_like_removal(zeroings: dict[str, nn.Module], removal: nn.Module, images: torch.Tensor) -> Check:
    """Which of the `zeroings` ({name: model}) give the outputs of `removal` on `images` (within
    float rounding: the sums run in another order)."""
    same = {name for name, net in zeroings.items() if torch.allclose(net(images), removal(images), rtol=1e-4, atol=1e-4)}
    return Check(same, "zeroings that give the outputs of removal")


def largest_convolution(model: nn.Module, convs: list[str]) -> Check:
    return Check(max(convs, key=lambda name: model.get_submodule(name).weight.numel()), "the largest convolution")


HIGHLIGHTS = [
    Highlight("first layer pruned by L1 and retrained, test accuracy", "first_layer_retrained_accuracy", "accuracy"),
    Highlight("weights removed by magnitude pruning", "magnitude_pruned_fraction", "share"),
    Highlight("the paper's MLP threshold minus the manual one", "paper_mlp_minus_manual", "points"),
]
