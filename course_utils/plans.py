"""Plans: which filters go, from scores.

    plan = lowest(scores, share)            # the lowest `share` of every layer
    plan = globally_lowest(scores, count)   # the lowest `count` across layers (comparable scores)

A plan maps a conv's name to the indices of its filters to remove; `surgery.remove` carries it
out. On a model with residual groups, plan each group once: `group_scores(graph, scores)` (or
`reducible_scores` for paper 05's candidates) gives one score vector per group. `kept_count`,
`keeping` and `keep_for_parameters` serve the plans that keep a share of every layer (ThiNet's).
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from .chain import check_layers
from .graph import ModelGraph
from .metrics import count_parameters
from .surgery import remove


def check_ratio(ratio: float, name: str = "ratio") -> float:
    """A fraction of filters to remove must be a number strictly between 0 and 1."""
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 < ratio < 1:
        raise ValueError(f"{name} is a fraction of filters to remove and must be a number in (0, 1), "
                         f"got {ratio!r}")
    return ratio


def check_scores(scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scores a plan can be made from: at least one layer, each one finite number per filter."""
    if not isinstance(scores, dict) or not scores:
        raise ValueError(f"scores must map each layer to its filters' scores; got {type(scores).__name__} "
                         f"{'(empty)' if isinstance(scores, dict) else ''}: was the criterion given any data?")
    for name, values in scores.items():
        if not torch.is_tensor(values) or values.ndim != 1 or not len(values):
            shape = tuple(values.shape) if torch.is_tensor(values) else type(values).__name__
            raise ValueError(f"the scores of {name} must be a 1-D tensor, one score per filter; got {shape}")
        if not torch.isfinite(values).all():
            raise ValueError(f"the scores of {name} hold NaN or infinite values: the criterion failed "
                             f"(empty data, a diverged model?); a plan cannot be made from them")
    return scores


def lowest(scores: dict[str, torch.Tensor], share: float, layers: list[str] | None = None,
           round_to: int = 1, graph: ModelGraph | None = None, kept=None) -> dict[str, list[int]]:
    """A plan removing a **share** of the filters in every scored layer (or only `layers`):
    the int(share x filters) with the lowest scores, keeping at least one filter per layer.
    On a model with residual groups, give it `group_scores` (one entry per group): surgery
    refuses a plan that cuts two members of a group differently.

    `round_to`: each layer keeps a multiple of that many filters, rounded up (Torch-Pruning's
    option of that name: vector units and tensor cores like channel counts in multiples of 8).
    `graph` (the model's `ModelGraph`): where a layer's channels pass through a grouped
    convolution, each of its groups loses its own lowest, as many as the others (surgery
    requires it); without a graph such a plan is refused there. `kept(channels, share, unit)`:
    how many filters a layer keeps (default `balanced_count`; notebook 07's learner writes it)."""
    check_ratio(share, "share")
    kept = balanced_count if kept is None else kept
    check_scores(scores)
    check_layers(layers)
    if isinstance(round_to, bool) or not isinstance(round_to, numbers.Integral) or round_to < 1:
        raise ValueError(f"round_to is a whole number of channels, at least 1; got {round_to!r}")
    unknown = set(layers or []) - set(scores)
    if unknown:
        raise ValueError(f"no scores for {sorted(unknown)}; scored layers: {sorted(scores)}")
    plan = {}
    for name in layers or scores:
        values = scores[name]
        blocks = graph.group_of(name).blocks if graph is not None else 1
        keeping = kept(len(values), share, math.lcm(round_to, blocks))
        if keeping < len(values):
            per_block = values.reshape(blocks, -1)
            cut = per_block.argsort(dim=1)[:, :(len(values) - keeping) // blocks]
            offsets = torch.arange(blocks)[:, None] * per_block.shape[1]
            plan[name] = sorted((cut + offsets).flatten().tolist())
    return plan


def balanced_count(channels: int, share: float, unit: int = 1) -> int:
    """The filters a layer keeps when `lowest` removes `share` of them: all but int(share x
    channels), at least one, rounded up to a multiple of `unit` (and at most all)."""
    kept = channels - min(int(share * channels), channels - 1)
    return min(channels, math.ceil(kept / unit) * unit)


def globally_lowest(scores: dict[str, torch.Tensor], count: int) -> dict[str, list[int]]:
    """A plan removing a **count** of filters: the `count` with the lowest scores across all
    layers (for scores comparable between layers, such as the KL oracle's), keeping at
    least one filter in every layer."""
    total = sum(len(s) for s in check_scores(scores).values())
    if isinstance(count, bool) or not isinstance(count, numbers.Integral):
        raise ValueError(f"count is a number of filters and must be a whole number, got {count!r} "
                         f"(for a share of all filters, pass round(share * {total}))")
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


def group_scores(graph: ModelGraph, scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One score vector per prunable channel group, under its first member's name: the
    **mean** of its members' scores for each shared channel. For Taylor and the deletion
    effect every member already carries the group's joint score (the channel removed from
    the whole residual stream), so the mean is that score; for a weight norm it is the
    group's norm (every weight that goes with the channel) over its number of members,
    which keeps a group comparable with a single layer in a global ranking. A group of one
    conv keeps its own scores. `lowest` on the result cuts each group once."""
    check_scores(scores)
    grouped = {}
    for group in graph.groups:
        wrong = [conv for conv in group.convs if conv in scores and group.channels is not None
                 and len(scores[conv]) != group.channels]
        if wrong:
            raise ValueError(f"{wrong[0]} has {group.channels} filters but {len(scores[wrong[0]])} scores")
        members = [scores[conv] for conv in group.convs if conv in scores]
        if group.prunable and members:
            grouped[group.convs[0]] = torch.stack(members).mean(0)
    return grouped


def reducible_scores(graph: ModelGraph, scores: dict[str, torch.Tensor],
                     residual_groups: bool = False) -> dict[str, torch.Tensor]:
    """Paper 05's candidates for removal: the `group_scores` of the convs its rule lets us
    reduce (`ModelGraph.reducible`), with or without the residual groups."""
    grouped = group_scores(graph, scores)
    return {conv: grouped[conv] for conv in graph.reducible(residual_groups)}


def kept_count(channels: int, keep: float) -> int:
    """How many of a layer's `channels` filters stay when it keeps the fraction `keep`:
    ThiNet's Algorithm 1 grows its set `while |S| < C x r`, so ceil(C x r), and at least one.
    The one rounding rule of every plan that keeps a share per layer."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep is the fraction of filters kept and must lie in (0, 1], got {keep}")
    return max(1, math.ceil(round(channels * keep, 9)))


def keeping(model: nn.Module, keep: float, layers: list[str]) -> dict[str, list[int]]:
    """A plan in which every conv of `layers` keeps `kept_count(filters, keep)` filters
    (its first ones: for counting what a share costs, not for choosing which go)."""
    plan = {}
    for name in layers:
        channels = model.get_submodule(name).out_channels
        if kept_count(channels, keep) < channels:
            plan[name] = list(range(kept_count(channels, keep), channels))
    return plan


def keep_for_parameters(graph: ModelGraph, target: float, layers: list[str],
                        reference: int | None = None, steps: int = 14) -> float:
    """The largest share of filters every conv of `layers` can keep (rounded by
    `kept_count`) so that the parameters left are at most `target` x `reference` (default:
    the model's own). A bisection on copies of the graph (no trace): the model is not changed."""
    check_ratio(target, "target (remaining / initial parameters)")
    model = graph.model
    reference = reference or count_parameters(model)

    def remaining(keep):
        return count_parameters(remove(graph.copy(), keeping(model, keep, layers)).model) / reference
    low, high = 1e-3, 1.0
    if remaining(low) > target:
        raise ValueError(f"even one filter per layer of {layers} leaves more than {target} of "
                         f"the parameters; prune more layers")
    for _ in range(steps):
        middle = (low + high) / 2
        low, high = (middle, high) if remaining(middle) <= target else (low, middle)
    return low
