"""ThiNet (Luo et al.; Algorithm 1 of paper 04): keep the channels that best rebuild the next
layer's output, and rescale them by least squares.

    terms = sample_terms(graph, link, data, per_image, generator)   # each channel's term, sampled
    order = thinet_selection(terms, terms.sum(1))                    # the greedy order of Algorithm 1
    graph = thinet_prune(graph, data, conv, keep)                    # one layer cut, the scaling folded in

The score form, for the criteria's one signature, is `scores.thinet`.
"""

from __future__ import annotations

import torch

from .chain import sampled_contributions
from .data import ImageData, require_images
from .device import model_device
from .graph import Link, ModelGraph, model_of, split_model
from .surgery import remove


def sample_terms(model: ModelGraph, link: Link, data: ImageData, per_image: int,
                 generator: torch.Generator, batch_size: int = 256) -> torch.Tensor:
    """Each channel's term at sampled entries of the link's consumer output: (samples, channels)."""
    require_images(data, "the calibration data")
    front, _ = split_model(model, link.cut)
    consumer = model_of(model).get_submodule(link.consumer)
    device = model_device(model_of(model))
    return torch.cat([sampled_contributions(consumer, front(images), per_image, generator)[0]
                      for images, _ in data.batches(batch_size, device=device)])


def greedy_order(terms: torch.Tensor, target: torch.Tensor, count: int, step=None) -> torch.Tensor:
    """The first `count` channels Algorithm 1 keeps, in order: `thinet_selection` (every step
    at once), or the learner's `step(terms, target, kept)` called once per channel."""
    if step is None:
        return thinet_selection(terms, target)[:count]
    kept: list[int] = []
    for _ in range(count):
        kept.append(int(step(terms, target, list(kept))))
    return torch.tensor(kept)


@torch.no_grad()
def thinet_prune(graph: ModelGraph, data: ImageData, conv: str, keep: int, per_image: int = 10,
                 seed: int = 0, batch_size: int = 256, step=None) -> ModelGraph:
    """ThiNet on one layer of `graph.model`, in place: choose `keep` of the conv's filters
    (Algorithm 1; with `step`, the learner's greedy step: see `greedy_order`), remove the
    others, and fold the least-squares scaling of the kept channels into the consumer's
    weights, so that its output stays as close as it can to the unpruned one. Returns the
    pruned model's graph (no new trace), for the next layer."""
    link = graph.link(conv)
    if isinstance(keep, bool) or not isinstance(keep, int) or not 0 < keep <= link.channels:
        raise ValueError(f"keep must be a whole number from 1 to {link.channels} for {conv}, got {keep!r}")
    model = graph.model
    was_training = model.training
    model.eval()
    terms = sample_terms(graph, link, data, per_image, torch.Generator().manual_seed(seed), batch_size)
    kept = greedy_order(terms, terms.sum(1), keep, step).sort().values
    scaling = thinet_scaling(terms[:, kept], terms.sum(1))
    kept = kept.tolist()
    graph = remove(graph, {conv: [c for c in range(link.channels) if c not in set(kept)]})
    consumer = model.get_submodule(link.consumer)
    columns = consumer.weight.view(consumer.weight.shape[0], len(kept), -1)  # a view: in place
    columns.mul_(scaling.to(columns.dtype).view(1, -1, 1))
    model.train(was_training)
    return graph


def thinet_selection(terms: torch.Tensor, target: torch.Tensor,
                     ridge: float = 1e-8) -> torch.Tensor:
    """Paper 04's Algorithm 1, run until every channel is chosen: `terms` (samples,
    channels) are each channel's contribution and `target` the values to rebuild. Each
    step adds the channel whose least-squares fit best explains the residual of the kept
    set's own least-squares fit. Returns the channels in the order they were chosen.
    Works on the Gram matrix, whose kept block's Cholesky factor grows by one row a step,
    so a step costs two triangular solves, not a pass over the samples or a new solve."""
    x, y = terms.double(), target.double()
    gram, correlation = x.T @ x, x.T @ y
    channels = x.shape[1]
    energy = gram.diagonal() + ridge
    factor = gram.new_zeros(channels, channels)  # lower Cholesky factor of the kept Gram + ridge
    residual_correlation = correlation.clone()  # X^T (y - X_S w), the residual's match
    chosen: list[int] = []
    for step in range(channels):
        # ||r - x_i w_i||^2 at the best w_i is ||r||^2 - (x_i . r)^2 / (x_i . x_i)
        gain = residual_correlation ** 2 / energy
        gain[chosen] = -1
        new = int(gain.argmax())
        row = torch.linalg.solve_triangular(factor[:step, :step], gram[chosen, new].unsqueeze(1),
                                            upper=False).squeeze(1)
        factor[step, :step] = row
        # the new pivot is at least the ridge in exact arithmetic; the clamp guards rounding
        factor[step, step] = (gram[new, new] + ridge - row @ row).clamp(min=ridge).sqrt()
        chosen.append(new)
        weights = torch.cholesky_solve(correlation[chosen].unsqueeze(1), factor[:step + 1, :step + 1])
        residual_correlation = correlation - gram[:, chosen] @ weights.squeeze(1)
    return torch.tensor(chosen)


def thinet_scaling(kept_terms: torch.Tensor, target: torch.Tensor,
                   ridge: float = 1e-8) -> torch.Tensor:
    """ThiNet's least-squares step: one factor per kept channel so that the kept terms,
    scaled, best rebuild `target`. The ridge (1e-8: the report's own fix, paper 04) keeps the normal
    equations solvable when two channels' terms are collinear or a channel is all zero."""
    x = kept_terms.double()
    return _ridge_solve(x.T @ x, x.T @ target.double(), ridge).to(kept_terms.dtype)


def _ridge_solve(gram: torch.Tensor, right: torch.Tensor, ridge: float) -> torch.Tensor:
    eye = torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
    return torch.linalg.solve(gram + ridge * eye, right)
