"""Paper 04's gradient votes: which filters' gradients stand out during training.

    norms = filter_gradient_norms(model, data, batches=8)   # per mini-batch and filter
    votes = outlier_votes(norms, s)                          # one vote per outlier per batch
    plan = voted_filters(votes, s)                           # the second vote: the filters pruned

`loosening(s, epsilon)` gives the thresholds a pruning point tries when it falls short; the
score form, for the criteria's one signature, is `scores.gradient_outliers`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .data import ImageData, require_images
from .device import model_device
from .graph import ModelGraph, model_of, scored_convs


def filter_gradient_norms(model: nn.Module | ModelGraph, data: ImageData, batches: int = 8,
                          batch_size: int = 128, seed: int = 0) -> dict:
    """Paper 04's raw statistic: on `batches` random training mini-batches, the gradient of
    the loss for each filter's weights, its norm over the kernel per input channel,
    averaged over input channels. Returns {conv: (batches, filters)}. The weights are not
    updated and the batch-norm statistics are restored: only the gradients are read."""
    model = model_of(model)
    require_images(data, "the training data")
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"batches is how many mini-batches' gradients are read, a whole number of at least 1, "
                         f"got {batches!r}")
    convs = scored_convs(model)
    device = model_device(model)
    saved = {name: buffer.clone() for name, buffer in model.named_buffers()}
    was_training = model.training
    model.train()  # gradients as training sees them (batch statistics in batch norm)
    norms = {name: [] for name in convs}
    try:
        for index, (images, labels) in enumerate(
                data.batches(batch_size, shuffle=True, seed=seed, device=device)):
            if index == batches:
                break
            model.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(images), labels).backward()
            for name, conv in convs.items():
                norms[name].append(conv.weight.grad.flatten(2).norm(dim=2).mean(1))
    finally:
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(saved[name])
        model.train(was_training)
    return {name: torch.stack(rows).cpu() for name, rows in norms.items()}


def outlier_votes(norms: dict[str, torch.Tensor], s: float) -> dict:
    """Per mini-batch, one vote for every filter whose gradient norm exceeds its layer's
    mean + s x std in that batch; returns the votes per filter."""
    return {name: (rows > rows.mean(1, keepdim=True) + s * rows.std(1, keepdim=True)).sum(0)
            for name, rows in norms.items()}


def loosening(s: float, epsilon: float, lowest: float = -3.0, most: int = 10_000) -> list[float]:
    """The thresholds paper 04's pruning point tries, loosening s by epsilon: s, s - epsilon,
    ... down to `lowest` (below it every filter gets a vote). Finite by construction: a NaN
    s, or an epsilon too small to move s, is refused instead of looping for ever."""
    if not (math.isfinite(s) and math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"s must be finite and epsilon a positive number, got s={s}, epsilon={epsilon}")
    steps = math.floor((s - lowest) / epsilon) + 1 if s >= lowest else 1
    if steps > most or s - epsilon == s:
        raise ValueError(f"loosening s={s} by epsilon={epsilon} down to {lowest} takes {steps:,} steps "
                         f"(more than {most:,}): choose a larger epsilon or a smaller s")
    return [s - k * epsilon for k in range(steps)]


def voted_filters(votes: dict[str, torch.Tensor], s: float) -> dict[str, list[int]]:
    """The second vote: the filters whose vote count exceeds their layer's mean + s x std
    (at least one filter of each layer stays)."""
    plan = {}
    for name, count in votes.items():
        count = count.float()
        chosen = (count > count.mean() + s * count.std()).nonzero().flatten()
        chosen = chosen[count[chosen].argsort(descending=True)][:len(count) - 1]
        if len(chosen):
            plan[name] = chosen.tolist()
    return plan
