"""Scores for a transformer's heads and MLP units, in the course's one signature.

    scores = head_importance(model, data)   # {attention layer: one score per head}, higher = keep
    scores = unit_importance(model, data)   # {MLP's first Linear: one score per hidden unit}

Importance is Michel et al.'s (paper 08): put a gate xi on each head's output (on each MLP
unit's output), and score it by the expected absolute gradient of the loss with respect to
its gate at xi = 1, E_x |dL(x)/d xi|, normalised per layer by the scores' l2 norm: a
first-order estimate of what gating it off costs, the idea of paper 05's Taylor criterion.
The gradients are per image in one backward pass: each image has gates of its own, and the
loss is summed, so an image's gates see only its own loss. `score` takes the per-image
gradients of one layer, (images, heads), and returns the layer's scores: the notebook's
*Your turn* function plugs in there.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from .data import ImageData, require_images
from .device import model_device
from .graph import ModelGraph, as_graph
from .heads import HeadAttention, WindowHeadAttention, _output_projection, attention_heads, remove_heads

Model = nn.Module | ModelGraph


def gate_importance(gradients: torch.Tensor) -> torch.Tensor:
    """The course's scores from per-image gate gradients (images, units): the mean absolute
    gradient, divided by its l2 norm over the layer's units."""
    mean = gradients.abs().mean(0)
    return mean / mean.norm().clamp(min=1e-12)


def head_importance(model: Model, data: ImageData, batch_size: int = 256,
                    score: Callable[[torch.Tensor], torch.Tensor] = gate_importance) -> dict:
    """{attention layer: `score` of its heads' per-image gate gradients}. The model is left as it
    was (its attention layers are gated in a copy, as HeadAttention layers computing the same)."""
    gated = copy.deepcopy(as_graph(model).model if isinstance(model, ModelGraph) else model)
    layers = {}
    for name, module in list(gated.named_modules()):
        if attention_heads(module):
            layers[name] = module if isinstance(module, (HeadAttention, WindowHeadAttention)) else remove_heads(module, [])
            gated.set_submodule(name, layers[name])

    def set_gates(batch: int, device) -> list[torch.Tensor]:
        for layer in layers.values():
            layer.gates = torch.ones(batch, layer.num_heads, device=device, requires_grad=True)
        return [layer.gates for layer in layers.values()]

    return _scored(gated, data, batch_size, set_gates, list(layers), score)


def unit_importance(model: Model, data: ImageData, batch_size: int = 256,
                    score: Callable[[torch.Tensor], torch.Tensor] = gate_importance) -> dict:
    """{an MLP's first Linear: `score` of its hidden units' per-image gate gradients}, the gate
    on what the next Linear reads (after the activation): every prunable group a Linear makes."""
    graph = as_graph(model)
    readers = _mlp_readers(graph)
    gates: dict[str, torch.Tensor] = {}

    def gate_input(module, args, producer):
        return (args[0] * gates[producer].reshape(args[0].shape[0], *[1] * (args[0].dim() - 2), -1),)

    hooks = [graph.model.get_submodule(reader).register_forward_pre_hook(
        lambda module, args, producer=producer: gate_input(module, args, producer)) for producer, reader in readers.items()]

    def set_gates(batch: int, device) -> list[torch.Tensor]:
        for producer in readers:
            gates[producer] = torch.ones(batch, graph.group_of(producer).channels, device=device, requires_grad=True)
        return list(gates.values())

    try:
        return _scored(graph.model, data, batch_size, set_gates, list(readers), score)
    finally:
        for hook in hooks:
            hook.remove()


def _mlp_readers(graph: ModelGraph) -> dict[str, str]:
    """{Linear producing a prunable group: the one Linear reading it}."""
    found = {}
    for group in graph.groups:
        producer = group.convs[0]
        if group.prunable and isinstance(graph.modules[producer], nn.Linear):
            readers = [r.module for r in graph.readers_of(producer) if r.kind == "channels"]
            if len(readers) == 1 and len(group.convs) == 1:
                found[producer] = readers[0]
    return found


def _scored(model: nn.Module, data: ImageData, batch_size: int, set_gates, names: list[str], score) -> dict:
    """Per-image gate gradients over `data` (the gates `set_gates` makes, one tensor per name),
    then `score` per layer."""
    require_images(data, "the calibration data")
    device, was_training = model_device(model), model.training
    model.eval()
    gradients: list[list[torch.Tensor]] = [[] for _ in names]
    try:
        dtype = next(model.parameters()).dtype
        for images, labels in data.batches(batch_size, device=device):
            images, gates = images.to(dtype), set_gates(len(images), device)
            loss = nn.functional.cross_entropy(model(images), labels, reduction="sum")
            for found, gradient in zip(gradients, torch.autograd.grad(loss, gates)):
                found.append(gradient.detach().cpu())
    finally:
        model.train(was_training)
    return {name: torch.as_tensor(score(torch.cat(found))).detach().cpu().float()
            for name, found in zip(names, gradients)}


def head_magnitude(model: Model, data: ImageData | None = None) -> dict:
    """{attention layer: the l2 norm of each head's weights}: its query, key and value rows and
    its output projection's columns (the weights that go with it)."""
    network = model.model if isinstance(model, ModelGraph) else model
    return {name: _head_weights(m, attention_heads(m)).norm(dim=1).cpu()
            for name, m in network.named_modules() if attention_heads(m)}


def _head_weights(module: nn.Module, heads: int) -> torch.Tensor:
    """(heads, every weight of the head) for any attention the course knows."""
    if isinstance(module, HeadAttention):
        qkv = torch.cat([m.weight for m in (module.q, module.k, module.v)])
    elif isinstance(module, nn.MultiheadAttention):
        qkv = module.in_proj_weight
    else:  # Swin's packed qkv Linear
        qkv = module.qkv.weight
    width = qkv.shape[0] // 3 // heads
    rows = qkv.detach().reshape(3, heads, width, -1).transpose(0, 1).reshape(heads, -1)
    columns = _output_projection(module).weight.detach().reshape(-1, heads, width).transpose(0, 1).reshape(heads, -1)
    return torch.cat([rows, columns], dim=1)


def unit_magnitude(model: Model, data: ImageData | None = None) -> dict:
    """{an MLP's first Linear: the l2 norm of each hidden unit's weights in and out}."""
    graph = as_graph(model)
    return {producer: torch.cat([graph.modules[producer].weight.detach(),
                                 graph.modules[reader].weight.detach().T], dim=1).norm(dim=1).cpu()
            for producer, reader in _mlp_readers(graph).items()}


def random_head_scores(model: Model, data: ImageData | None = None, seed: int = 0) -> dict:
    """Uniform random scores per head: the baseline importance must beat."""
    generator = torch.Generator().manual_seed(seed)
    network = model.model if isinstance(model, ModelGraph) else model
    return {name: torch.rand(attention_heads(m), generator=generator)
            for name, m in network.named_modules() if attention_heads(m)}


def random_unit_scores(model: Model, data: ImageData | None = None, seed: int = 0) -> dict:
    """Uniform random scores per MLP hidden unit."""
    generator = torch.Generator().manual_seed(seed)
    graph = as_graph(model)
    return {producer: torch.rand(graph.group_of(producer).channels, generator=generator)
            for producer in _mlp_readers(graph)}
