"""Paper 05's loop: score, cut a share of the reducible filters, fine-tune, repeat.

    run = reduce_iteratively(model, cuts=6, share=0.05, rounds_per_cut=1, rounds=parts, ...)

The model is traced once: each cut returns the pruned model's graph (`surgery.remove`), which
the next scoring and plan use. Round k of fine-tuning (counted over the whole run, whatever
is evaluated) trains on `rounds[k % len(rounds)]` with seed `seed + k`, so that every
schedule, and every model of a table, sees the same images in the same order at the same
round.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import torch
from torch import nn

from .data import ImageData
from .graph import ModelGraph
from .plans import check_ratio, globally_lowest, reducible_scores
from .scores import taylor
from .surgery import remove
from .train import evaluate, finetune


@dataclass
class Reduction:
    """What `reduce_iteratively` did: accuracy after each round (when asked) and the round
    before which each cut fell."""

    cut_before_round: list[int] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)  # on `curve_data`, one per round


def reducible_filters(graph: ModelGraph, residual_groups: bool = False) -> int:
    """How many filters paper 05's rule lets us remove (residual groups counted once)."""
    return sum(graph.group_of(conv).channels for conv in graph.reducible(residual_groups))


def reduce_iteratively(model: nn.Module, cuts: int, share: float, rounds_per_cut: int,
                       rounds: list[ImageData], calibration: ImageData,
                       example_input: torch.Tensor, *, lr: float, batch_size: int,
                       seed: int = 0, criterion: Callable = taylor,
                       residual_groups: bool = False,
                       curve_data: ImageData | None = None,
                       layers: Collection[str] | None = None) -> Reduction:
    """Reduce `model` in place: `cuts` times, score the filters on `calibration` with
    `criterion` (given the model's graph), remove the globally lowest `share` of the filters
    that were reducible at the start, and fine-tune `rounds_per_cut` rounds. With
    `curve_data`, the accuracy on it is recorded after every round. `layers`: only these
    reducible convolutions may lose filters (paper 05 found that in SqueezeNet "only the
    first convolution layer can be reduced"; our graph allows more), and the share is of
    their filters."""
    check_ratio(share * cuts, "share x cuts (the fraction of reducible filters removed)")
    if not (cuts >= 1 and rounds_per_cut >= 1 and rounds):
        raise ValueError("reduce_iteratively needs at least one cut, one round after each, "
                         "and a list of fine-tuning slices")
    graph = ModelGraph(model, example_input)
    candidates = graph.reducible(residual_groups)
    if layers is not None:
        if not layers or set(layers) - set(candidates):
            raise ValueError(f"layers must be reducible convolutions of this model, got "
                             f"{sorted(set(layers) - set(candidates)) or 'none'}; reducible: {candidates}")
        candidates = [conv for conv in candidates if conv in set(layers)]
    per_cut = round(share * sum(graph.group_of(conv).channels for conv in candidates))
    run, done = Reduction(), 0
    for _ in range(cuts):
        scores = reducible_scores(graph, criterion(graph, calibration), residual_groups)
        graph = remove(graph, globally_lowest({conv: scores[conv] for conv in candidates}, per_cut))
        run.cut_before_round.append(done)
        for _ in range(rounds_per_cut):
            finetune(model, rounds[done % len(rounds)], lr=lr, batch_size=batch_size, seed=seed + done)
            done += 1
            if curve_data is not None:
                run.accuracy.append(evaluate(model, curve_data).accuracy)
    return run
