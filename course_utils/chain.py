"""A plain chain of layers seen one link at a time: each conv, the layer that consumes its
channels, and what every channel contributes there.

Oracle criteria (paper 03's KL divergence, ThiNet in papers 03 and 04) ask what happens
when one channel disappears. In a chain (VGG, AlexNet) the answer is local until the
next conv or linear layer, the *consumer*: its output is a sum over input channels,

    consumer(z) = bias + sum_j contribution_j(z_j),

so removing channel j subtracts one term. `links(model)` asks the model's graph, for every
conv, where its channels are final (the *cut*: after batch norm, ReLU and pooling) and which
layer sums them (`ModelGraph.link`); `channel_contributions` and `sampled_contributions`
compute the terms.
"""

from __future__ import annotations

import torch
from torch import nn

from .graph import Link, ModelGraph, as_graph


def check_layers(layers: list[str] | None) -> None:
    """`layers=None` means every conv; an empty list is a mistake, not "all"."""
    if layers is not None and (isinstance(layers, str) or not len(layers)):
        raise ValueError(f"layers must be None (every conv) or a non-empty list of conv names, got {layers!r}")


def links(model: nn.Module | ModelGraph, layers: list[str] | None = None) -> list[Link]:
    """One link per conv with filters of its own (or per conv in `layers`), in forward order;
    a SurgeryError where the model is not a plain chain. Takes the model or its graph."""
    graph = as_graph(model)
    check_layers(layers)
    unknown = set(layers or ()) - set(graph.convs)
    if unknown:
        raise ValueError(f"no conv with filters called {sorted(unknown)}; choose from {graph.convs}")
    return [graph.link(conv) for conv in graph.convs if layers is None or conv in layers]


def channel_contributions(consumer: nn.Module, inputs: torch.Tensor,
                          channels: torch.Tensor | list[int]) -> torch.Tensor:
    """The terms of `channels` in the consumer's output, shape (images, len(channels),
    *consumer output per image): the consumer's output with a channel removed is the
    full output minus its term. `inputs` is the cut's output, all channels."""
    channels = torch.as_tensor(channels, device=inputs.device)
    images = len(inputs)
    if isinstance(consumer, nn.Linear):
        weight = consumer.weight.view(consumer.out_features, inputs.shape[1], -1)
        chosen = inputs.flatten(2)[:, channels]
        return torch.einsum("nct,kct->nck", chosen, weight[:, channels])
    # one single-channel convolution per (input channel, output channel): a grouped conv
    weight = consumer.weight[:, channels].transpose(0, 1)  # (chosen, out, kh, kw)
    terms = nn.functional.conv2d(inputs[:, channels], weight.reshape(-1, 1, *weight.shape[2:]),
                                 None, consumer.stride, consumer.padding, consumer.dilation,
                                 groups=len(channels))
    return terms.view(images, len(channels), consumer.out_channels, *terms.shape[2:])


def sampled_contributions(consumer: nn.Module, inputs: torch.Tensor, per_image: int,
                          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """ThiNet's sample: at `per_image` random (output unit, position) entries of the
    consumer's output per image, each input channel's term. Returns X of shape
    (images x per_image, channels) and y, the consumer's output there without its bias
    (each row of X sums to y)."""
    images = len(inputs)
    if isinstance(consumer, nn.Linear):
        weight = consumer.weight.view(consumer.out_features, inputs.shape[1], -1)
        patches = inputs.flatten(2).unsqueeze(3)  # one "position", all columns in the kernel
    else:
        weight = consumer.weight.flatten(2)  # (out, in, kh*kw)
        patches = nn.functional.unfold(inputs, consumer.kernel_size, consumer.dilation,
                                       consumer.padding, consumer.stride)
        patches = patches.view(images, consumer.in_channels, weight.shape[2], -1)
    units = torch.randint(weight.shape[0], (images, per_image), generator=generator)
    where = torch.randint(patches.shape[3], (images, per_image), generator=generator)
    units, where = units.to(inputs.device), where.to(inputs.device)
    # patches at the sampled positions: (images, per_image, channels, kernel)
    taken = patches.permute(0, 3, 1, 2)[torch.arange(images, device=inputs.device)[:, None], where]
    terms = torch.einsum("nsck,nsck->nsc", taken, weight[units]).reshape(-1, weight.shape[1])
    return terms, terms.sum(1)
