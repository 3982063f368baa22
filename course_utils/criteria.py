"""Filter-importance criteria, one function each, all with the same shape.

    scores = criterion(model, data)   # {conv name: one score per filter}, higher = keep

`data` is an `ImageData` (the calibration images; weight-only criteria ignore it), and
every conv with groups=1 gets a score vector. `lowest(scores, ratio)` turns any of them
into a surgery plan, so a notebook or a table can swap criteria in one line.
"""

from __future__ import annotations

import torch
from torch import nn

from .chain import channel_contributions, links, sampled_contributions
from .data import ImageData
from .surgery import scored_convs, split_model


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


@torch.no_grad()
def kl_oracle(model: nn.Module, data: ImageData, batch_size: int = 256,
              images_per_pass: int = 2048, fast: bool = True,
              layers: list[str] | None = None) -> dict:
    """Paper 03's score: for every filter, the mean over the images of
    KL[softmax(model) || softmax(model without that filter)]. Comparable across layers.

    fast=False runs the whole model once per filter, masking the filter's channel. The
    fast version (the same numbers) runs, per layer, the front of the network once; the
    consumer's output once, then, for many filters in one batched pass, that output minus
    each filter's term (a single-channel convolution); and only the rest of the network.
    `layers` limits the scoring to those convs.
    """
    was_training = model.training
    model.eval()
    try:
        score = _kl_fast if fast else _kl_naive
        return {link.conv: score(model, link, data, batch_size, images_per_pass).cpu()
                for link in links(model, layers)}
    finally:
        model.train(was_training)


def _kl_fast(model, link, data, batch_size, images_per_pass):
    front, middle, back = split_model(model, link.cut, link.consumer)
    consumer = model.get_submodule(link.consumer)
    chunk = max(1, images_per_pass // batch_size)
    device = next(model.parameters()).device
    totals = torch.zeros(link.channels, device=device)
    for images, _ in data.batches(batch_size, device=device):
        channels_out = front(images)
        reference = middle(channels_out)
        log_p = torch.log_softmax(back(reference.clone()), 1)  # clone: back's ReLUs are in place
        for start in range(0, link.channels, chunk):
            channels = torch.arange(start, min(start + chunk, link.channels), device=device)
            terms = channel_contributions(consumer, channels_out, channels)
            without = (reference.unsqueeze(1) - terms).transpose(0, 1).flatten(0, 1)
            log_q = torch.log_softmax(back(without), 1).view(len(channels), len(images), -1)
            totals[channels] += _kl(log_p, log_q).sum(1)
    return totals / len(data)


def _kl_naive(model, link, data, batch_size, images_per_pass):
    cut = model.get_submodule(link.cut)
    device = next(model.parameters()).device
    totals = torch.zeros(link.channels, device=device)
    for images, _ in data.batches(batch_size, device=device):
        log_p = torch.log_softmax(model(images), 1)
        for channel in range(link.channels):
            def drop(module, inputs, output, channel=channel):
                output = output.clone()
                output[:, channel] = 0
                return output
            hook = cut.register_forward_hook(drop)
            try:
                totals[channel] += _kl(log_p, torch.log_softmax(model(images), 1)).sum()
            finally:
                hook.remove()
    return totals / len(data)


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL[p || q] per row (over the last dimension), from log-probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


@torch.no_grad()
def thinet(model: nn.Module, data: ImageData, per_image: int = 10, seed: int = 0,
           batch_size: int = 256, layers: list[str] | None = None) -> dict:
    """ThiNet's greedy channel selection (Luo et al.), as a score: for each conv, sample
    entries of the next layer's output, then remove, one at a time, the channel whose
    removal (with those removed before) changes them least. A filter's score is its
    place in that order, so `lowest(scores, ratio)` is ThiNet's choice at every ratio.
    Scores are per layer only: ThiNet prunes layer by layer. `layers` limits the scoring."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    scores = {}
    try:
        for link in links(model, layers):
            front, _ = split_model(model, link.cut)
            consumer = model.get_submodule(link.consumer)
            terms = torch.cat([
                sampled_contributions(consumer, front(images), per_image, generator)[0]
                for images, _ in data.batches(batch_size, device=device)])
            order = thinet_order(terms, terms.sum(1))
            scores[link.conv] = torch.empty(link.channels).index_put_(
                (order.cpu(),), torch.arange(link.channels, dtype=torch.float))
    finally:
        model.train(was_training)
    return scores


def thinet_order(terms: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Greedy removal order of ThiNet's Algorithm 1: `terms` (samples, channels) are each
    channel's contribution and `target` the values to keep; each step removes the channel
    that leaves the kept channels' sum closest to `target` (squared error)."""
    terms, target = terms.double(), target.double()
    residual = target - terms.sum(1)  # target minus the sum of the channels still kept
    remaining = torch.ones(terms.shape[1], dtype=torch.bool, device=terms.device)
    order = []
    for _ in range(terms.shape[1]):
        # removing channel j changes the residual by + terms[:, j]
        errors = ((residual[:, None] + terms) ** 2).sum(0)
        errors[~remaining] = float("inf")
        chosen = int(errors.argmin())
        order.append(chosen)
        remaining[chosen] = False
        residual += terms[:, chosen]
    return torch.tensor(order)


def thinet_scaling(kept_terms: torch.Tensor, target: torch.Tensor,
                   ridge: float = 1e-8) -> torch.Tensor:
    """ThiNet's least-squares step: one factor per kept channel so that the kept terms,
    scaled, best rebuild `target`. The ridge (ThiNet's authors use 1e-8) keeps the normal
    equations solvable when two channels' terms are collinear or a channel is all zero."""
    x = kept_terms.double()
    gram = x.T @ x + ridge * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    return torch.linalg.solve(gram, x.T @ target.double()).to(kept_terms.dtype)


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


def globally_lowest(scores: dict[str, torch.Tensor], count: int) -> dict[str, list[int]]:
    """A plan removing the `count` filters with the lowest scores across all layers (for
    scores comparable between layers, such as the KL oracle's), keeping at least one
    filter in every layer."""
    total = sum(len(s) for s in scores.values())
    if not 0 < count < total - len(scores) + 1:
        raise ValueError(f"count must lie between 1 and {total - len(scores)} (every layer keeps "
                         f"a filter), got {count}")
    names = [name for name, s in scores.items() for _ in range(len(s))]
    indices = [i for s in scores.values() for i in range(len(s))]
    plan: dict[str, list[int]] = {}
    for position in torch.cat(list(scores.values())).argsort().tolist():
        name = names[position]
        if len(plan.get(name, [])) < len(scores[name]) - 1:
            plan.setdefault(name, []).append(indices[position])
            count -= 1
            if count == 0:
                break
    return plan
