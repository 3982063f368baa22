"""Surgery on a model's graph: filters removed for real, or masked.

    graph = ModelGraph(model, example_input)   # one trace
    graph = remove(graph, plan)                 # in place; returns the pruned model's graph (no new trace)
    mask(graph, plan)                            # zeroes them instead: the same outputs, every shape kept
    remove_filters(model, example_input, plan)   # one cut of a model, tracing it: remove on a new graph

`plan` maps a conv's qualified name to the indices of the filters to remove (the graph checks
it, `ModelGraph.resolve`), and an attention layer's name to the heads to remove (a smaller
`heads.HeadAttention` takes its place) or, in `mask`, to gate off. Every member of the conv's coupled group loses the same channels,
and every reader (the next convs, batch norms, a linear layer after a flatten, a layer scale)
loses the matching inputs; a constant that a removed channel becomes on the way (after a
sigmoid, `+ 1`) is folded into the reader's bias, so the pruned model computes what the
masked one does.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .graph import ModelGraph, Reader, SurgeryError, produces_channels
from .heads import gate_heads, heads_refused, remove_heads

Plan = Mapping[str, Sequence[int]]


def remove(graph: ModelGraph, plan: Plan) -> ModelGraph:
    """Remove the planned output channels, and everything coupled to them, from `graph.model`
    in place; returns the graph of the pruned model (the same trace, walked again), so a loop
    of cuts traces its model once. Parameters are replaced by smaller ones, with any `.grad`
    sliced alike, and batch-norm running statistics are sliced: an optimizer built before must
    be built again. Nothing changes when the plan is refused."""
    return graph.rebuilt() if _remove(graph, plan) else graph


def remove_filters(model: nn.Module, example_input: torch.Tensor, plan: Plan,
                   slice_layer_norms: bool = False) -> nn.Module:
    """`remove` for one cut of a model: builds its graph (one trace), removes the plan in place
    and returns the model (copy it first to keep the original). `slice_layer_norms`: see
    `ModelGraph`. For several cuts, or several plans tried on copies, build the graph once and
    use `remove(graph, plan)` or `remove(graph.copy(), plan)`."""
    _remove(ModelGraph(model, example_input, slice_layer_norms), plan)
    return model


def _remove(graph: ModelGraph, plan: Plan) -> bool:
    """The removal itself; whether anything was removed."""
    removed, heads = graph.resolve(plan), graph.resolve_heads(plan)
    refused = {name: heads_refused(graph.modules[name]) for name in heads}
    if any(refused.values()):
        name = next(name for name, why in refused.items() if why)
        raise SurgeryError(f"the heads of {name} cannot be removed: {refused[name]}")
    if removed:
        _remove_channels(graph, removed)
    for name, chosen in heads.items():  # after the channels: a smaller attention copies its parts as pruned
        graph.model.set_submodule(name, remove_heads(graph.modules[name], chosen))  # (Swin v2's bias MLP)
    return bool(removed or heads)


def _remove_channels(graph: ModelGraph, removed: dict[int, list[int]]) -> None:
    # every reader's positions first: whatever can fail, fails before the model changes
    readers = [(reader, graph.positions(reader.layout, removed)) for reader in graph.readers]
    for reader, positions in readers:
        if positions and reader.kind == "linear" and not (reader.layout.spatial or 0) >= 1:
            raise SurgeryError(f"the features per channel before {reader.module} are unknown; "
                               f"build the graph with an example input")
    for index, channels in removed.items():
        for conv in graph.groups[index].convs:
            module = graph.modules[conv]
            if isinstance(module, nn.Linear):
                _shrink(module, ("weight", "bias"), 0, channels, module.out_features)
                module.out_features -= len(channels)
            elif produces_channels(module):
                _shrink(module, ("weight", "bias"), 0, channels, module.out_channels)
                module.out_channels -= len(channels)
    for reader, positions in readers:
        if positions:
            constants = graph.constants(reader.layout, removed)
            if constants:
                _fold_into_bias(graph.modules[reader.module], reader, constants)
            _shrink_reader(graph.modules[reader.module], reader, positions)


@torch.no_grad()
def _fold_into_bias(module: nn.Module, reader: Reader, constants: dict[int, float]) -> None:
    """Add to the reader's bias what the removed input channels contributed as constants
    (`ModelGraph` allowed it only where that is exact), creating the bias if there is none."""
    weight = module.weight.detach()
    if reader.kind == "linear":  # each channel is `spatial` consecutive columns
        weight = weight.view(weight.shape[0], -1, reader.layout.spatial)
    elif reader.kind not in ("conv", "channels"):
        return  # a batch norm or depthwise conv: masking zeroes what comes out of it
    positions = torch.tensor(list(constants), device=weight.device)
    values = torch.tensor(list(constants.values()), dtype=weight.dtype, device=weight.device)
    taken = weight.index_select(1, positions)
    added = (taken.flatten(2).sum(2) if taken.ndim > 2 else taken) @ values
    if module.bias is None:
        module.bias = nn.Parameter(torch.zeros_like(added))
    module.bias += added


def _shrink_reader(module: nn.Module, reader: Reader, positions: list[int]) -> None:
    if reader.kind == "conv":
        _shrink(module, ("weight",), 1, positions, module.in_channels)
        module.in_channels -= len(positions)
    elif reader.kind == "grouped":
        _shrink_grouped(module, positions)
    elif reader.kind == "channels":
        _shrink(module, ("weight",), 1, positions, module.in_features)
        module.in_features -= len(positions)
    elif reader.kind == "scale":
        parameter = getattr(module, reader.parameter)
        _shrink(module, (reader.parameter,), reader.axis, positions,
                parameter.shape[reader.axis])
    elif reader.kind == "layernorm":
        _shrink(module, ("weight", "bias"), 0, positions, module.normalized_shape[0])
        module.normalized_shape = (module.normalized_shape[0] - len(positions),)
    elif reader.kind == "batchnorm":
        _shrink(module, ("weight", "bias", "running_mean", "running_var"), 0, positions,
                module.num_features)
        module.num_features -= len(positions)
    else:  # a linear layer after a flatten: each channel is `spatial` consecutive columns
        spatial = reader.layout.spatial  # known: remove_filters checked it first
        columns = [c * spatial + s for c in positions for s in range(spatial)]
        _shrink(module, ("weight",), 1, columns, module.in_features)
        module.in_features -= len(columns)


def _shrink_grouped(conv: nn.Conv2d, positions: list[int]) -> None:
    """Remove channels `positions` from the inputs and outputs of a grouped convolution with
    as many outputs as inputs: output i's filter goes, and every remaining filter of i's
    group loses its weights on input i (a group losing all its channels disappears)."""
    size = conv.out_channels // conv.groups
    drop = set(positions)
    rows, columns = [], []  # per remaining output: its filter, and the inputs it keeps
    for block in range(conv.groups):
        kept = [j for j in range(size) if block * size + j not in drop]
        rows += [block * size + j for j in kept]
        columns += [kept] * len(kept)
    groups = len(rows) // len(columns[0])
    device = conv.weight.device
    rows_index = torch.tensor(rows, device=device)
    columns_index = torch.tensor(columns, device=device)

    def sliced(weight):
        chosen = weight.detach().index_select(0, rows_index)
        return chosen.gather(1, columns_index[:, :, None, None].expand(-1, -1, *chosen.shape[2:]))

    weight = nn.Parameter(sliced(conv.weight), requires_grad=conv.weight.requires_grad)
    if conv.weight.grad is not None:
        weight.grad = sliced(conv.weight.grad)
    conv._parameters["weight"] = weight
    _shrink(conv, ("bias",), 0, positions, conv.out_channels)
    conv.in_channels = conv.out_channels = len(rows)
    conv.groups = groups


def _shrink(module: nn.Module, names, dim: int, drop: Sequence[int], size: int) -> None:
    """Replace each named parameter or buffer by itself without the indices `drop` on `dim`."""
    keep = None
    for name in names:
        tensor = getattr(module, name, None)
        if tensor is None:
            continue
        if keep is None or keep.device != tensor.device:
            keep = _keep_index(size, tuple(drop), tensor.device)
        smaller = tensor.detach().index_select(dim, keep)  # a new tensor: no clone needed
        if isinstance(tensor, nn.Parameter):
            smaller = nn.Parameter(smaller, requires_grad=tensor.requires_grad)
            if tensor.grad is not None:
                smaller.grad = tensor.grad.index_select(dim, keep)
            module._parameters[name] = smaller  # replaces a registered parameter in place
        else:
            module._buffers[name] = smaller


@functools.lru_cache(maxsize=1024)
def _keep_index(size: int, drop: tuple[int, ...], device) -> torch.Tensor:
    """The indices of `size` that stay when `drop` go (one tensor, shared by every layer of a
    group: a conv, its batch norm, its readers)."""
    keep = torch.ones(size, dtype=torch.bool)
    keep[list(drop)] = False
    return keep.nonzero().flatten().to(device)


def thin(model: nn.Module, width: float, example_input: torch.Tensor) -> nn.Module:
    """Make a model `width` times as wide by removing the last channels of every prunable
    group: how the course scales torchvision's models, which have no width argument.
    Meant for untrained models (which channels go does not matter there). In place, on one
    trace; returns the model."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 1:
        raise ValueError(f"width must be a number in (0, 1], got {width!r}")
    graph = ModelGraph(model, example_input)
    plan = {group.convs[0]: list(range(max(1, round(group.channels * width)), group.channels))
            for group in graph.groups if group.prunable}
    _remove(graph, {conv: channels for conv, channels in plan.items() if channels})
    return model


@torch.no_grad()
def mask(graph: ModelGraph, plan: Plan) -> nn.Module:
    """Zero the planned filters of `graph.model` (and their coupled group's, and their batch
    norms' scale and shift), keeping every shape: the outputs of `remove`, none of its
    savings. In place; returns the model. A graph built without an example input will do
    (channel counts then come from the plan alone)."""
    removed = graph.resolve(plan)
    for name, heads in graph.resolve_heads(plan).items():
        gate_heads(graph.modules[name], heads)
    for index, channels in removed.items():
        for conv in graph.groups[index].convs:
            module = graph.modules[conv]
            if produces_channels(module):
                module.weight[channels] = 0
                if module.bias is not None:
                    module.bias[channels] = 0
    for reader in graph.readers:
        if reader.kind in ("batchnorm", "grouped"):
            positions = graph.positions(reader.layout, removed)
            module = graph.modules[reader.module]
            for name in ("weight", "bias"):
                if getattr(module, name, None) is not None and positions:
                    getattr(module, name)[positions] = 0
    return graph.model


def mask_filters(model: nn.Module, example_input: torch.Tensor | None, plan: Plan) -> nn.Module:
    """`mask` for one plan on a model: builds its graph (one trace). In place; returns the model."""
    return mask(ModelGraph(model, example_input), plan)
