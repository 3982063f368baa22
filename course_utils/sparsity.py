"""One-shot sparsity of a trained model's Linear layers (paper 09): magnitude, Wanda, SparseGPT.

    masks = one_shot(model, layers, calibration, "wanda", sparsity=0.5)            # unstructured
    masks = one_shot(model, layers, calibration, "sparsegpt", pattern=(2, 4))      # 2:4

Each method zeroes weights of each Linear named in `layers`, in forward order, with no
gradient step; the statistics of a layer's inputs come from hooks over `calibration` (an
iterable of model inputs) on the model as pruned so far, as both papers do. A mask is kept per
layer (True where a weight stays). Sparsity is exact: per output row for magnitude and Wanda
(each row loses int(sparsity x inputs)), per group of M inputs for an N:M pattern (N of every M
consecutive weights of a row are zero), and per block of columns for unstructured SparseGPT
(its mask is chosen adaptively over each block, as in the paper).

- magnitude: |W|, compared within each row (or over the whole layer, `per_row=False`);
- Wanda (Sun et al.): |W_ij| x ||X_j||_2, the weight times the l2 norm of its input feature
  over the calibration tokens, compared within each row; no weight update;
- SparseGPT (Frantar and Alistarh): the Optimal Brain Surgeon reconstruction of W X under the
  mask, with the damped Hessian H = X X^T + lambda I, its inverse through a Cholesky factor,
  columns in blocks (lazy updates), the mask chosen per block from w^2 / [H^-1]_jj^2, and each
  removed weight's error spread over the row's remaining weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

METHODS = ("magnitude", "wanda", "sparsegpt")


def check_sparsity(sparsity: float | None, pattern: tuple[int, int] | None) -> None:
    """One of the two: a share in [0, 1), or an N:M pattern with 0 < N < M."""
    if (sparsity is None) == (pattern is None):
        raise ValueError("give a sparsity (a share of the weights, in [0, 1)) or an N:M pattern such as (2, 4), "
                         "one of the two")
    if pattern is None and (isinstance(sparsity, bool) or not isinstance(sparsity, (int, float))
                            or not 0 <= sparsity < 1):
        raise ValueError(f"sparsity is the share of weights set to zero, in [0, 1); got {sparsity!r}")
    if pattern is not None:
        if not (isinstance(pattern, (tuple, list)) and len(pattern) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in pattern) and 0 < pattern[0] < pattern[1]):
            raise ValueError(f"an N:M pattern is two whole numbers with 0 < N < M, such as (2, 4); got {pattern!r}")


def _check_width(weight: torch.Tensor, pattern: tuple[int, int] | None, name: str = "the layer") -> None:
    if pattern is not None and weight.shape[1] % pattern[1]:
        raise ValueError(f"{name} has {weight.shape[1]} inputs, not a multiple of M = {pattern[1]}: "
                         f"an {pattern[0]}:{pattern[1]} pattern needs whole groups")


def lowest_mask(scores: torch.Tensor, sparsity: float | None = None, pattern: tuple[int, int] | None = None,
                per_row: bool = True) -> torch.Tensor:
    """The mask (True = kept) zeroing the lowest scores: int(sparsity x inputs) of each row
    (of the whole layer with `per_row=False`), or the N lowest of every M consecutive inputs."""
    check_sparsity(sparsity, pattern)
    _check_width(scores, pattern)
    rows, columns = scores.shape
    kept = torch.ones_like(scores, dtype=torch.bool)
    if pattern is not None:
        n, m = pattern
        groups = scores.reshape(rows, columns // m, m)
        lowest = groups.topk(n, dim=2, largest=False).indices
        return kept.reshape(rows, columns // m, m).scatter(2, lowest, False).reshape(rows, columns)
    if per_row:
        count = int(sparsity * columns)
        if count:
            kept.scatter_(1, scores.topk(count, dim=1, largest=False).indices, False)
        return kept
    count = int(sparsity * scores.numel())
    if count:
        kept.view(-1)[scores.flatten().topk(count, largest=False).indices] = False
    return kept


def magnitude_mask(weight: torch.Tensor, sparsity: float | None = None, pattern: tuple[int, int] | None = None,
                   per_row: bool = True) -> torch.Tensor:
    """Keep the largest |W| (per row, per layer, or N:M)."""
    return lowest_mask(weight.detach().abs(), sparsity, pattern, per_row)


def wanda_mask(weight: torch.Tensor, input_norms: torch.Tensor, sparsity: float | None = None,
               pattern: tuple[int, int] | None = None, per_row: bool = True) -> torch.Tensor:
    """Wanda: keep the largest |W_ij| x ||X_j||_2 of each row (or N:M group)."""
    if input_norms.shape != (weight.shape[1],):
        raise ValueError(f"one input norm per input feature: {weight.shape[1]}, got shape {tuple(input_norms.shape)}")
    return lowest_mask(weight.detach().abs() * input_norms.to(weight.device)[None, :], sparsity, pattern, per_row)


@torch.no_grad()
def sparsegpt(weight: torch.Tensor, hessian: torch.Tensor, sparsity: float | None = None,
              pattern: tuple[int, int] | None = None, block: int = 128, damping: float = 0.01):
    """SparseGPT on one layer: (the new weight, its mask). `hessian` is X X^T summed over the
    calibration tokens (inputs x inputs); `damping` a share of its mean diagonal added to it."""
    check_sparsity(sparsity, pattern)
    _check_width(weight, pattern)
    if pattern is not None and block % pattern[1]:
        raise ValueError(f"the block of {block} columns must hold whole groups of M = {pattern[1]}")
    w = weight.detach().clone().float()
    h = hessian.detach().clone().float().to(w.device)
    dead = torch.diag(h) == 0  # an input that was always zero: its weights cannot matter
    h[dead, dead] = 1
    w[:, dead] = 0
    h += damping * torch.diag(h).mean() * torch.eye(len(h), device=w.device)
    inverse = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    rows, columns = w.shape
    kept = torch.ones_like(w, dtype=torch.bool)
    for start in range(0, columns, block):
        end = min(start + block, columns)
        part, part_inverse = w[:, start:end].clone(), inverse[start:end, start:end]
        errors = torch.zeros_like(part)
        diagonal = torch.diag(part_inverse)
        if pattern is None:  # the adaptive mask of the block: its lowest w^2 / [H^-1]_jj^2
            kept[:, start:end] = lowest_mask(part ** 2 / diagonal[None, :] ** 2, sparsity, per_row=False)
        for j in range(end - start):
            if pattern is not None and j % pattern[1] == 0:  # chosen group by group, on the updated weights
                group = slice(start + j, start + j + pattern[1])
                kept[:, group] = lowest_mask(part[:, j:j + pattern[1]] ** 2 / diagonal[None, j:j + pattern[1]] ** 2,
                                             pattern=pattern)
            column = part[:, j]
            pruned = torch.where(kept[:, start + j], column, torch.zeros_like(column))
            error = (column - pruned) / part_inverse[j, j]
            part[:, j:] -= error[:, None] * part_inverse[j, j:][None, :]
            part[:, j] = pruned
            errors[:, j] = error
        w[:, start:end] = part
        w[:, end:] -= errors @ inverse[start:end, end:]
    return (w * kept).to(weight.dtype), kept


class InputStatistics:
    """What a Linear's inputs were over the calibration tokens: the squared l2 norm of each
    input feature (Wanda) and X X^T (SparseGPT), summed over every token."""

    def __init__(self, inputs: int, device):
        self.squares = torch.zeros(inputs, device=device, dtype=torch.float64)
        self.hessian = torch.zeros(inputs, inputs, device=device, dtype=torch.float64)
        self.tokens = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).double()
        self.squares += (x ** 2).sum(0)
        self.hessian += x.T @ x
        self.tokens += len(x)


@torch.no_grad()
def input_statistics(model: nn.Module, layer: str, calibration: Iterable[torch.Tensor]) -> InputStatistics:
    """The inputs of `layer` over every calibration batch (one forward pass each)."""
    linear = model.get_submodule(layer)
    statistics = InputStatistics(linear.in_features, linear.weight.device)
    hook = linear.register_forward_pre_hook(lambda module, args: statistics.add(args[0]))
    try:
        for batch in calibration:
            model(batch)
    finally:
        hook.remove()
    if statistics.tokens == 0:
        raise ValueError("the calibration set is empty: give at least one batch of inputs")
    return statistics


def _own_mask(rule, weight: torch.Tensor, norms: torch.Tensor, sparsity: float, name: str) -> torch.Tensor:
    mask = rule(weight.detach().clone(), norms, sparsity)
    if not torch.is_tensor(mask) or mask.shape != weight.shape:
        raise ValueError(f"{name}: a rule returns a mask shaped like the weight {tuple(weight.shape)}, "
                         f"got {getattr(mask, 'shape', type(mask).__name__)}")
    return mask.to(device=weight.device, dtype=torch.bool)


@torch.no_grad()
def one_shot(model: nn.Module, layers: Sequence[str], calibration: Sequence[torch.Tensor], method: str,
             sparsity: float | None = None, pattern: tuple[int, int] | None = None, per_row: bool = True,
             score: str = "both") -> dict[str, torch.Tensor]:
    """Prune `layers` (Linear layers, in forward order) of `model` in place, one at a time, each
    on the statistics of its inputs in the model as pruned so far; returns their masks.
    `score` (Wanda's ablation): "both" (|W| x ||X||), "weight" (|W|) or "activation" (||X||).
    `method` may also be a function (weight, input norms, sparsity) -> mask: a rule of one's own."""
    if callable(method):
        if pattern is not None:
            raise ValueError("a rule of your own is given an unstructured sparsity, not an N:M pattern")
    elif method not in METHODS:
        raise ValueError(f"method is one of {', '.join(METHODS)}, or a function (weight, input norms, "
                         f"sparsity) -> mask; got {method!r}")
    if score not in ("both", "weight", "activation"):
        raise ValueError(f"score is 'both', 'weight' or 'activation'; got {score!r}")
    check_sparsity(sparsity, pattern)
    calibration = list(calibration)
    if not calibration:
        raise ValueError("the calibration set is empty: give at least one batch of inputs")
    linears = {name: model.get_submodule(name) for name in layers}
    for name, linear in linears.items():
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"{name} is a {type(linear).__name__}: one-shot sparsity here prunes Linear layers")
        _check_width(linear.weight, pattern, name)
    was_training = model.training
    model.eval()
    masks = {}
    try:
        for name, linear in linears.items():
            if method == "magnitude":
                masks[name] = magnitude_mask(linear.weight, sparsity, pattern, per_row)
                linear.weight.mul_(masks[name])
                continue
            statistics = input_statistics(model, name, calibration)
            if callable(method):  # a learner's rule (notebook 09's Wanda): it is given what Wanda is given
                masks[name] = _own_mask(method, linear.weight, statistics.squares.sqrt().float(), sparsity, name)
                linear.weight.mul_(masks[name])
            elif method == "wanda":
                norms = statistics.squares.sqrt().float()
                scores = {"both": linear.weight.abs() * norms[None, :], "weight": linear.weight.abs(),
                          "activation": norms[None, :].expand_as(linear.weight)}[score]
                masks[name] = lowest_mask(scores, sparsity, pattern, per_row)
                linear.weight.mul_(masks[name])
            else:
                new_weight, masks[name] = sparsegpt(linear.weight, statistics.hessian, sparsity, pattern)
                linear.weight.copy_(new_weight)
    finally:
        model.train(was_training)
    return masks
