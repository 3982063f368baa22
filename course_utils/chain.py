"""A plain chain of layers seen one link at a time: each conv, the layer that consumes its
channels, and what every channel contributes there.

Oracle criteria (paper 03's KL divergence, ThiNet in papers 03 and 04) ask what happens
when one channel disappears. In a chain (VGG, AlexNet) the answer is local until the
next conv or linear layer, the *consumer*: its output is a sum over input channels,

    consumer(z) = bias + sum_j contribution_j(z_j),

so removing channel j subtracts one term. `links(model)` finds, for every conv, the
last module before its consumer (the *cut*, where the channel is final: after batch
norm, ReLU and pooling) and the consumer; `channel_contributions` and
`sampled_contributions` compute the terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .surgery import SurgeryError, scored_convs, trace

# modules that act on each channel alone (and map a zero channel to zero, or are removed
# with the filter, as batch norm is), so the channel can be zeroed after them
CHANNELWISE = (nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
               nn.AdaptiveMaxPool2d, nn.Dropout, nn.Identity)


@dataclass(frozen=True)
class Link:
    conv: str  # the conv whose filters are scored
    cut: str  # the last module before the consumer: zeroing a channel here removes it
    consumer: str  # the next conv or linear layer, whose output sums the channels
    channels: int  # the conv's filters


def check_layers(layers: list[str] | None) -> None:
    """`layers=None` means every conv; an empty list is a mistake, not "all"."""
    if layers is not None and (isinstance(layers, str) or not len(layers)):
        raise ValueError(f"layers must be None (every conv) or a non-empty list of conv names, got {layers!r}")


def links(model: nn.Module, layers: list[str] | None = None) -> list[Link]:
    """One link per scored conv (or per conv in `layers`), in forward order; a SurgeryError
    where the model is not a plain chain (a branch, a residual add, a functional op other
    than flatten)."""
    graph = trace(model)
    modules = dict(model.named_modules())
    convs = scored_convs(model)
    check_layers(layers)
    unknown = set(layers or ()) - set(convs)
    if unknown:
        raise ValueError(f"no conv with filters called {sorted(unknown)}; choose from {list(convs)}")
    found = []
    for start in graph.graph.nodes:
        if start.op != "call_module" or start.target not in (layers or convs):
            continue
        node = cut = start
        flattened = False
        while True:
            if len(node.users) != 1:
                raise SurgeryError(f"the output of {node.name} is used {len(node.users)} times: "
                                   f"oracle criteria here need a plain chain of layers")
            node = next(iter(node.users))
            module = modules.get(node.target) if node.op == "call_module" else None
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                break
            if _is_flatten(node) or isinstance(module, nn.Flatten):
                flattened = True
            elif not isinstance(module, CHANNELWISE):
                raise SurgeryError(f"{node.name} ({node.op} {node.target}) after {start.target} "
                                   f"is not a channel-wise layer: oracle criteria here need a "
                                   f"plain chain")
            elif not flattened:  # the cut keeps the (images, channels, ...) layout
                cut = node
        found.append(Link(start.target, cut.target, node.target, convs[start.target].out_channels))
    return found


def _is_flatten(node) -> bool:
    return ((node.op == "call_function" and node.target is torch.flatten)
            or (node.op == "call_method" and node.target == "flatten"))


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
