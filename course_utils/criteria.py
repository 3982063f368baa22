"""Filter-importance criteria, one function each, all with the same shape.

    scores = criterion(model, data)   # {conv name: one score per filter}, higher = keep

`data` is an `ImageData` (the calibration images; weight-only criteria ignore it), and
every conv with groups=1 gets a score vector. `lowest(scores, ratio)` turns any of them
into a surgery plan, so a notebook or a table can swap criteria in one line.
"""

from __future__ import annotations

import torch
from torch import nn

from .data import ImageData


def scored_convs(model: nn.Module) -> dict[str, nn.Conv2d]:
    """The convolutions that have filters of their own (groups=1), by qualified name."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and m.groups == 1}


def random_scores(model: nn.Module, data: ImageData | None = None, seed: int = 0) -> dict:
    """Uniform random scores: the baseline every criterion must beat."""
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.rand(conv.out_channels, generator=generator)
            for name, conv in scored_convs(model).items()}


def l1_norm(model: nn.Module, data: ImageData | None = None) -> dict:
    """Sum of absolute weights of each filter (Li et al.; paper 02's Method 1)."""
    return {name: conv.weight.detach().abs().sum((1, 2, 3)).cpu()
            for name, conv in scored_convs(model).items()}


def l2_norm(model: nn.Module, data: ImageData | None = None) -> dict:
    """Euclidean norm of each filter's weights."""
    return {name: conv.weight.detach().flatten(1).norm(dim=1).cpu()
            for name, conv in scored_convs(model).items()}


def _hooked_passes(model, data: ImageData, batch_size: int, with_gradients: bool):
    """Yield, per batch, {conv name: its output} (with `.grad` filled when asked)."""
    convs = scored_convs(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    outputs, hooks = {}, []
    for name, conv in convs.items():
        def keep(module, inputs, output, name=name):
            if with_gradients:
                output.retain_grad()
            outputs[name] = output
        hooks.append(conv.register_forward_hook(keep))
    try:
        for images, labels in data.batches(batch_size, device=device):
            with torch.set_grad_enabled(with_gradients):
                logits = model(images)
                if with_gradients:
                    model.zero_grad(set_to_none=True)
                    # summed, not averaged: each image's gradient must not depend on
                    # the size of the batch it happened to fall in
                    nn.functional.cross_entropy(logits, labels, reduction="sum").backward()
            yield outputs
    finally:
        for hook in hooks:
            hook.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)


def mean_activation(model: nn.Module, data: ImageData, batch_size: int = 256) -> dict:
    """Mean of each filter's ReLU-ed output over images and positions (paper 05's second
    criterion), normalised per layer to unit L2 norm."""
    sums: dict[str, torch.Tensor] = {}
    for outputs in _hooked_passes(model, data, batch_size, with_gradients=False):
        for name, output in outputs.items():
            total = output.relu().sum((0, 2, 3)) / output[0, 0].numel()
            sums[name] = sums.get(name, 0) + total.detach()
    return {name: _unit(total / len(data)) for name, total in sums.items()}


def taylor(model: nn.Module, data: ImageData, batch_size: int = 256) -> dict:
    """First-order Taylor (Molchanov et al.): |mean over images and positions of
    activation x gradient of the loss| per filter, normalised per layer to unit L2 norm.
    It estimates how much the loss would change if the filter's output were zeroed."""
    sums: dict[str, torch.Tensor] = {}
    for outputs in _hooked_passes(model, data, batch_size, with_gradients=True):
        for name, output in outputs.items():
            contribution = (output * output.grad).mean((2, 3)).sum(0)
            sums[name] = sums.get(name, 0) + contribution.detach()
    return {name: _unit((total / len(data)).abs()) for name, total in sums.items()}


def _unit(scores: torch.Tensor) -> torch.Tensor:
    return (scores / scores.norm().clamp(min=1e-12)).cpu()


def check_ratio(ratio: float, name: str = "ratio") -> float:
    """A fraction of filters to remove must lie strictly between 0 and 1."""
    if not 0 < ratio < 1:
        raise ValueError(f"{name} is a fraction of filters to remove and must lie in (0, 1), "
                         f"got {ratio}")
    return ratio


def lowest(scores: dict[str, torch.Tensor], ratio: float,
           layers: list[str] | None = None) -> dict[str, list[int]]:
    """A surgery plan removing, in every scored layer (or only `layers`), the fraction
    `ratio` of its filters with the lowest scores (at least one filter is always kept)."""
    check_ratio(ratio)
    unknown = set(layers or []) - set(scores)
    if unknown:
        raise ValueError(f"no scores for {sorted(unknown)}; scored layers: {sorted(scores)}")
    plan = {}
    for name in layers or scores:
        count = min(int(ratio * len(scores[name])), len(scores[name]) - 1)
        if count:
            plan[name] = scores[name].argsort()[:count].tolist()
    return plan
