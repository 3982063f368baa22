"""The exercises' checks, one function each, grouped by notebook.

A notebook binds each to its run's objects, so that its visible cell names what is checked
and on what, without computing the answer in sight:

    check_1 = partial(checks.parameters_left, model=tiny, example=x, plan={"0": [0, 3]})

Each compares the student's answer with the value computed here from those objects
(`exercises.check`: "correct", or what is off), never with a stored one.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .compression import compression_rate
from .exercises import check
from .metrics import count_flops, count_parameters, non_dominated
from .graph import ModelGraph
from .plans import balanced_count, kept_count
from .reduction import reducible_filters
from .scores import channel_ends
from .superclasses import merge_penalty
from .surgery import remove_filters
from .thinet import thinet_scaling


def _removed(model: nn.Module, example: torch.Tensor, plan: dict[str, list[int]]) -> nn.Module:
    return remove_filters(copy.deepcopy(model), example, plan)


# 00 · foundations
def parameters_left(answer, model: nn.Module, example: torch.Tensor, plan: dict[str, list[int]]) -> bool:
    return check(answer, count_parameters(_removed(model, example, plan)), "parameters left")


def flops_per_image(answer, model: nn.Module, example: torch.Tensor) -> bool:
    return check(answer, count_flops(model, example), "FLOPs per image")


@torch.no_grad()
def zeroing_equals_removing(answer, model: nn.Sequential, example: torch.Tensor, conv: str, index: int) -> bool:
    """Whether zeroing filter `index` of `conv` (weights and bias, not the batch norm after
    it) gives the outputs of removing it."""
    zeroed = copy.deepcopy(model)
    zeroed.get_submodule(conv).weight[index] = 0
    zeroed.get_submodule(conv).bias[index] = 0
    same = torch.allclose(zeroed(example), _removed(model, example, {conv: [index]})(example), atol=1e-5)
    return check(answer, same, "zeroing equals removing here")


# 01 · divide and delete filters
def parameter_share(answer, part: nn.Module, whole: nn.Module, what: str) -> bool:
    return check(answer, count_parameters(part) / count_parameters(whole), what, tolerance=0.02)


def groups_a_class_responds_to(answer, drops: torch.Tensor, label: int) -> bool:
    """The filter groups whose deletion lowers class `label`'s accuracy (drops: groups x classes)."""
    return check(answer, set((drops[:, label] > 0).nonzero().flatten().tolist()), f"groups class {label} responds to")


def merge_penalty_of(answer, a: torch.Tensor, b: torch.Tensor) -> bool:
    return check(answer, merge_penalty(a, b), "merge penalty")


# 02 · norm pruning and weight sharing
def l1_norm_of_filter(answer, norms: dict[str, torch.Tensor], layer: str, index: int) -> bool:
    return check(answer, norms[layer][index], f"L1 norm of {layer}'s filter {index}")


def compression_rate_of(answer, weights: int, values: int) -> bool:
    return check(answer, compression_rate(weights, values), "compression rate")


@torch.no_grad()
def zeroings_like_removal(answer, zeroings: dict[str, nn.Module], removal: nn.Module, images: torch.Tensor) -> bool:
    """Which of the `zeroings` ({name: model}) give the outputs of `removal` on `images`
    (within float rounding: the sums run in another order)."""
    same = {name for name, net in zeroings.items() if torch.allclose(net(images), removal(images), rtol=1e-4, atol=1e-4)}
    return check(answer, same, "zeroings that give the outputs of removal")


def largest_convolution(answer, model: nn.Module, convs: list[str]) -> bool:
    return check(answer, max(convs, key=lambda name: model.get_submodule(name).weight.numel()), "the largest convolution")


# 03 · similar function (KL)
def filters_in_plan(answer, plan: dict[str, list[int]], what: str) -> bool:
    return check(answer, sum(len(channels) for channels in plan.values()), what)


def layer_cut_most(answer, plan: dict[str, list[int]]) -> bool:
    return check(answer, max(plan, key=lambda layer: len(plan[layer])), "the layer cut most")


def kl_divergence_of(answer, p: torch.Tensor, q: torch.Tensor) -> bool:
    return check(answer, (p * (p / q).log()).sum(), "KL[p || q]")


# 04 · ThiNet against gradient pruning
def channels_kept(answer, channels: int, rate: float) -> bool:
    return check(answer, kept_count(channels, rate), "channels kept")


def least_squares_scales(answer, kept_terms: torch.Tensor, target: torch.Tensor) -> bool:
    return check(answer, thinet_scaling(kept_terms, target).tolist(), "least-squares scales", tolerance=1e-4)


def parameter_share_after(answer, model: nn.Module, example: torch.Tensor, plan: dict[str, list[int]]) -> bool:
    share = count_parameters(_removed(model, example, plan)) / count_parameters(model)
    return check(answer, share, "parameters remaining", tolerance=0.02)


# 05 · Taylor pruning through the execution graph
def map_read_at(answer, model: nn.Module, conv: str) -> bool:
    return check(answer, channel_ends(model)[conv], f"where {conv}'s map is read")


def taylor_before_normalisation(answer, contributions: torch.Tensor, index: int = 0) -> bool:
    """Filter `index`'s score from per-image contributions (images x filters: each image's
    spatial mean of activation x gradient)."""
    return check(answer, contributions.abs().mean(0)[index], "Taylor score before normalisation")


def filters_in_one_cut(answer, model: nn.Module, example: torch.Tensor, step: float) -> bool:
    return check(answer, round(step * reducible_filters(ModelGraph(model, example))), "filters in one cut")


# 06 · criteria shootout
def rank_one(answer, ranks, model_name: str) -> bool:
    return check(answer, set(ranks[ranks == 1].index), f"rank 1 on {model_name}")


def non_dominated_points(answer, costs, values) -> bool:
    return check(answer, non_dominated(costs, values), "non-dominated points")


def points_on_front(answer, runs) -> bool:
    """(criterion, budget) points of `runs` on the front of mean test accuracy against FLOPs."""
    points = runs.groupby(["criterion", "budget"]).agg(flops=("flops", "mean"), accuracy=("test_after", "mean"))
    return check(answer, sum(non_dominated(points.flops, points.accuracy)), "points on the front")


def extra_filters(answer, removed: int, baseline: int, what: str) -> bool:
    return check(answer, removed - baseline, what)


# 07 · from FLOPs to latency
def conv_flops_left(answer, channels: int, removed: int, size: int = 8) -> bool:
    """The share of a 3x3 conv's FLOPs (channels in and out) left when `removed` of its
    filters go and as many of its inputs."""
    dense, smaller = nn.Conv2d(channels, channels, 3, padding=1), nn.Conv2d(channels - removed, channels - removed, 3, padding=1)
    image = torch.zeros(1, channels, size, size)
    return check(answer, count_flops(smaller, image[:, :channels - removed]) / count_flops(dense, image),
                 "share of the FLOPs left", tolerance=0.01)


def slowest_to_fall(answer, breakdown) -> bool:
    return check(answer, breakdown["pruned / dense"].idxmax(), "the operator whose time fell least")


def balanced_filters_kept(answer, channels: int, share: float, unit: int) -> bool:
    return check(answer, balanced_count(channels, share, unit), "filters kept")
