"""Notebook 00's lesson, kept beside it: the *Your turn* task (its cases, the course's answer,
what a wrong answer is told), its exercises' answers and its highlights. The notebook binds
them to its run's objects; nothing here is shown in it."""

from __future__ import annotations

import copy

import torch
from torch import nn

from course_utils.grading import Case, Check, Task, tensor_off
from course_utils.harness.highlights import Highlight
from course_utils.metrics import count_flops, count_parameters
from course_utils.surgery import remove, remove_filters

# ---------------------------------------------------------------- Your turn: remove a filter through a batch norm


def remove_filter_by_surgery(conv: nn.Conv2d, norm: nn.BatchNorm2d, next_conv: nn.Conv2d, j: int):
    """The course's answer: the three layers as one network, filter j removed by `remove_filters`
    (which reads the network's graph to find every layer the channel reaches)."""
    chain = nn.Sequential(copy.deepcopy(conv), copy.deepcopy(norm), copy.deepcopy(next_conv))
    remove_filters(chain, torch.zeros(1, conv.in_channels, 8, 8, device=conv.weight.device), {"0": [j]})
    return chain[0], chain[1], chain[2]


def _conv_norm_conv(filters: int, seed: int, bias: bool = True):
    generator = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(2, filters, 3, padding=1, bias=bias)
    norm = nn.BatchNorm2d(filters)
    next_conv = nn.Conv2d(filters, 3, 3, padding=1, bias=bias)
    with torch.no_grad():
        for tensor in (*conv.parameters(), *next_conv.parameters(), norm.weight, norm.bias, norm.running_mean):
            tensor.copy_(torch.randn(tensor.shape, generator=generator))  # a shift that is not zero
        norm.running_var.copy_(torch.rand(filters, generator=generator) + 0.5)
    return conv, norm.eval(), next_conv


_PARTS = ("the conv", "the batch norm", "the next conv")


def _compare_layers(answer, expected, arguments) -> str | None:
    """The three layers must hold the reference's tensors, keep the norm's mode (a norm in
    evaluation mode stays so: training mode would normalise with the batch's statistics), and
    compute the reference's output."""
    if not isinstance(answer, (tuple, list)) or len(answer) != 3 or not all(isinstance(m, nn.Module) for m in answer):
        return "return the three layers: (conv, norm, next_conv)"
    if answer[1].training != arguments[1].training:
        return f"the batch norm comes back in {'training' if answer[1].training else 'evaluation'} mode; keep its mode"
    for part, mine, right in zip(_PARTS, answer, expected):
        mine_state = {k: v for k, v in mine.state_dict().items() if k != "num_batches_tracked"}
        right_state = {k: v for k, v in right.state_dict().items() if k != "num_batches_tracked"}
        if set(mine_state) != set(right_state):
            return f"{part}: tensors {sorted(mine_state)} where they should be {sorted(right_state)}"
        for key, tensor in right_state.items():
            off = tensor_off(mine_state[key], tensor, f"{part}'s {key}", tolerance=1e-6)
            if off is not None:
                return off
    x = torch.randn(2, arguments[0].in_channels, 6, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return tensor_off(answer[2](answer[1](answer[0](x))), expected[2](expected[1](expected[0](x))),
                          "the output of the three layers")


def _cases() -> list[Case]:
    return [Case("a conv -> batch norm -> conv, filter 1 of 4 removed", (*_conv_norm_conv(4, 0), 1)),
            Case("the first filter (j = 0)", (*_conv_norm_conv(5, 1), 0)),
            Case("the last filter", (*_conv_norm_conv(5, 2), 4)),
            Case("convolutions without biases", (*_conv_norm_conv(4, 3, bias=False), 2)),
            Case("a layer of 2 filters, one left", (*_conv_norm_conv(2, 4), 0))]


TASK = Task("remove_filter", _cases, remove_filter_by_surgery, _compare_layers, fast=(remove,))


# ---------------------------------------------------------------- the exercises' answers


def parameters_left(model: nn.Module, example: torch.Tensor, plan: dict[str, list[int]]) -> Check:
    return Check(count_parameters(remove_filters(copy.deepcopy(model), example, plan)), "parameters left")


def flops_per_image(model: nn.Module, example: torch.Tensor) -> Check:
    return Check(count_flops(model, example), "FLOPs per image")


REASONS = ("the batch norm adds its shift to the zeroed channel, and the next conv reads it",
           "a zeroed filter outputs zero everywhere, whatever follows it",
           "the batch norm divides by the channel's variance, which is zero")


@torch.no_grad()
def zeroing_equals_removing(model: nn.Sequential, example: torch.Tensor, conv: str, index: int) -> Check:
    """Whether zeroing filter `index` of `conv` (weights and bias, not the batch norm after it)
    gives the outputs of removing it, to be answered with the reason (one of `REASONS`)."""
    zeroed = copy.deepcopy(model)
    zeroed.get_submodule(conv).weight[index] = 0
    zeroed.get_submodule(conv).bias[index] = 0
    removed = remove_filters(copy.deepcopy(model), example, {conv: [index]})
    same = torch.allclose(zeroed(example), removed(example), atol=1e-5)
    return Check(same, "zeroing equals removing here", reason=REASONS[1] if same else REASONS[0], reasons=REASONS)


HIGHLIGHTS = [
    Highlight("VGG-16 on CIFAR-10, test accuracy", "vgg16_cifar_accuracy", "accuracy"),
    Highlight("ResNet-18 on CIFAR-10, test accuracy", "resnet18_cifar_accuracy", "accuracy"),
    Highlight("half a VGG-16 conv cut by L1, minus at random", "vgg16_half_middle_conv_l1_minus_random", "points"),
]
