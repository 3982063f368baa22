"""Filter scores: every criterion of the course, one signature.

    scores = criterion(model, data)   # {conv name: one score per filter}, higher = keep

`model` is a model or its `ModelGraph` (pass the graph in a loop: the criteria that need the
graph then use it instead of tracing the model again); `data` is an `ImageData` (the
calibration images; weight-only criteria ignore it). Every conv with filters of its own gets
a score vector, so a notebook or a table can swap criteria in one line, and
`plans.lowest(scores, share)` turns any of them into a plan.
"""

from __future__ import annotations

import torch
from torch import nn

from .chain import channel_contributions, links
from .data import ImageData, require_images
from .device import model_device
from .graph import ModelGraph, SurgeryError, as_graph, model_of, scored_convs, split_model
from .thinet import greedy_order, sample_terms
from .votes import filter_gradient_norms, outlier_votes

Model = nn.Module | ModelGraph


def random_scores(model: Model, data: ImageData | None = None, seed: int = 0) -> dict:
    """Uniform random scores: the baseline every criterion must beat."""
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.rand(conv.out_channels, generator=generator)
            for name, conv in scored_convs(model_of(model)).items()}


def l1_norm(model: Model, data: ImageData | None = None) -> dict:
    """Sum of absolute weights of each filter (Li et al.; paper 02's Method 1)."""
    return {name: conv.weight.detach().abs().sum((1, 2, 3)).cpu()
            for name, conv in scored_convs(model_of(model)).items()}


def l2_norm(model: Model, data: ImageData | None = None) -> dict:
    """Euclidean norm of each filter's weights."""
    return {name: conv.weight.detach().flatten(1).norm(dim=1).cpu()
            for name, conv in scored_convs(model_of(model)).items()}


def channel_ends(model: Model) -> dict[str, str]:
    """{conv: the module after which zeroing a channel equals removing the conv's filter}: the
    batch norm that follows the conv alone (its shift would bring a zeroed channel back),
    else the conv itself (`ModelGraph.end`)."""
    graph = as_graph(model)
    return {conv: graph.end(conv) for conv in graph.convs}


def _hooked_passes(graph: ModelGraph, data: ImageData, batch_size: int, with_gradients: bool):
    """Yield, per batch, {conv name: the map its filter produces where zeroing it equals
    removing the filter} (`ModelGraph.end`: after the conv's own batch norm), with `.grad`
    filled when asked."""
    require_images(data, "the calibration data")
    model = graph.model
    device = model_device(model)
    was_training = model.training
    model.eval()
    outputs, hooks = {}, []
    for conv in graph.convs:
        def keep(module, inputs, output, conv=conv):
            if with_gradients:
                output.retain_grad()
            outputs[conv] = output
        hooks.append(model.get_submodule(graph.end(conv)).register_forward_hook(keep))
    try:
        for images, labels in data.batches(batch_size, device=device):
            with torch.set_grad_enabled(with_gradients):
                logits = model(images)
                if with_gradients:
                    model.zero_grad(set_to_none=True)
                    # summed, not averaged: each image's gradient is that image's own loss's
                    # gradient, whatever the size of the batch it happened to fall in
                    nn.functional.cross_entropy(logits, labels, reduction="sum").backward()
            yield outputs
    finally:
        for hook in hooks:
            hook.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)


def mean_activation(model: Model, data: ImageData, batch_size: int = 256) -> dict:
    """Mean of each filter's ReLU-ed map over images and positions (paper 05's second
    criterion), normalised per layer to unit L2 norm. The map is read after the conv's
    batch norm, where a zero map means a removed filter."""
    sums: dict[str, torch.Tensor] = {}
    for outputs in _hooked_passes(as_graph(model), data, batch_size, with_gradients=False):
        for name, output in outputs.items():
            total = output.relu().sum((0, 2, 3)) / output[0, 0].numel()
            sums[name] = sums.get(name, 0) + total.detach()
    return {name: _unit(total / len(data)) for name, total in sums.items()}


def taylor(model: Model, data: ImageData, batch_size: int = 256, score=None) -> dict:
    """First-order Taylor (Molchanov et al. 2017, eq. 8): per image, |activation x gradient
    of the loss, summed over the map|, then the mean over images; normalised per layer to
    unit L2 norm (so summing or averaging over positions ranks alike). It estimates how much
    each image's loss changes when the filter's map is set to zero, so the map is read
    where zero means removed: after the conv's batch norm (before it, the norm's shift
    would bring a zeroed channel back). A ReLU in between changes nothing: where it cuts,
    both the activation and its gradient are zero. The members of a residual group lose a
    channel together, so their terms are added per image before the absolute value (the
    first-order change of removing the channel from the residual stream); every member
    gets the group's score.

    `score(activation, gradient)`: one layer's scores from one batch's maps (notebook 05's
    task, the learner's own), averaged over the batches by their size; a residual group's
    joint terms reach it as (the summed products, ones)."""
    graph = as_graph(model)
    if score is not None:
        return _taylor_with(graph, data, batch_size, score)
    per_image: dict[str, list[torch.Tensor]] = {}
    for outputs in _hooked_passes(graph, data, batch_size, with_gradients=True):
        for name, output in outputs.items():
            per_image.setdefault(name, []).append((output * output.grad).sum((2, 3)).detach())
    terms = {name: torch.cat(parts) for name, parts in per_image.items()}  # (images, filters)
    for members in _residual_members(graph, terms):
        joint = sum(terms[conv] for conv in members)
        terms.update({conv: joint for conv in members})
    return {name: _unit(contribution.abs().mean(0)) for name, contribution in terms.items()}


def _residual_members(graph: ModelGraph, scored) -> list[list[str]]:
    """The scored members of each residual group (a group of more than one)."""
    return [members for group in graph.groups
            if len(members := [conv for conv in group.convs if conv in scored]) > 1]


def _taylor_with(graph: ModelGraph, data: ImageData, batch_size: int, score) -> dict:
    """`taylor` with the per-batch reduction `score(activation, gradient)` of the learner."""
    totals: dict[str, torch.Tensor] = {}
    for outputs in _hooked_passes(graph, data, batch_size, with_gradients=True):
        maps = {name: (output.detach(), output.grad.detach()) for name, output in outputs.items()}
        for members in _residual_members(graph, maps):
            joint = sum(activation * gradient for activation, gradient in (maps[conv] for conv in members))
            maps.update({conv: (joint, torch.ones_like(joint)) for conv in members})
        images = next(iter(maps.values()))[0].shape[0]
        for name, (activation, gradient) in maps.items():
            totals[name] = totals.get(name, 0) + images * torch.as_tensor(score(activation, gradient)).detach()
    return {name: _unit(total / len(data)) for name, total in totals.items()}


@torch.no_grad()
def deletion_effect(model: Model, data: ImageData, group_size: int = 1,
                    batch_size: int = 256, groups_per_pass: int = 8, fast: bool = True) -> dict:
    """Paper 01's measure as a score: how much accuracy on `data` drops when a group of
    `group_size` consecutive filters is deleted (each filter gets its group's score). One
    image is 1/N of accuracy; ties are broken by the loss increase, scaled below that.
    Deleting a channel of a residual group deletes it from every member at once (the
    channel of the residual stream), so every member of a group gets the same scores.

    Where the model can be cut after the conv's end (a chain), the front runs once per
    batch and only the rest of the network runs per group, `groups_per_pass` groups in
    one batched pass (the same numbers); elsewhere, or with fast=False, the whole model
    runs once per group."""
    require_images(data, "the calibration data")
    for name, value in (("group_size", group_size), ("groups_per_pass", groups_per_pass)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name} must be a whole number, at least 1, got {value}")
    graph = as_graph(model)
    model = graph.model
    was_training = model.training
    model.eval()
    batches = list(data.batches(batch_size, device=model_device(model)))
    (base_correct, base_loss), = _totals(model, batches)
    convs = set(graph.convs)
    scores = {}
    try:
        for group in graph.groups:
            members = [conv for conv in group.convs if conv in convs]
            if not members:
                continue
            channels = model.get_submodule(members[0]).out_channels
            deleted = [slice(start, start + group_size) for start in range(0, channels, group_size)]
            outcomes = _deletion_totals(graph, batches, [graph.end(conv) for conv in members], channels,
                                        deleted, groups_per_pass, fast)
            group_scores = torch.empty(channels)
            for removed, (correct, loss) in zip(deleted, outcomes):
                worse = (loss - base_loss) / len(data)
                group_scores[removed] = ((base_correct - correct) / len(data)
                                         + worse / (1 + abs(worse)) / (2 * len(data)))
            scores.update({conv: group_scores.clone() for conv in members})
    finally:
        model.train(was_training)
    return scores


def _totals(logits_of, batches, variants: int = 1) -> list[tuple[float, float]]:
    """(images right, summed loss) of each of `variants` versions of a model, whose logits
    `logits_of(images)` gives stacked: (variants x images, classes)."""
    totals = torch.zeros(variants, 2, dtype=torch.float64)
    for images, labels in batches:
        logits = logits_of(images).float()
        right = (logits.view(variants, len(labels), -1).argmax(2) == labels).sum(1)
        loss = nn.functional.cross_entropy(logits, labels.repeat(variants), reduction="none")
        totals += torch.stack([right.double(), loss.view(variants, -1).sum(1).double()], 1).cpu()
    return [tuple(row) for row in totals.tolist()]


def _deletion_totals(graph: ModelGraph, batches, ends: list[str], channels: int, deleted: list[slice],
                     groups_per_pass: int, cut: bool) -> list[tuple[float, float]]:
    """`_totals` of the model with each `deleted` slice of channels zeroed after every module
    in `ends`: by a cut after the end where the model allows one (and `cut`), else by hooks."""
    try:
        front, back = split_model(graph, ends[0]) if cut and len(ends) == 1 else (None, None)
    except SurgeryError:  # a skip connection reads around the cut
        front = back = None
    outcomes = []
    for first in range(0, len(deleted), groups_per_pass):
        chunk = deleted[first:first + groups_per_pass]
        keep = torch.ones(len(chunk), channels, device=batches[0][0].device)
        for row, removed in enumerate(chunk):
            keep[row, removed] = 0
        if back is not None:  # the front once per batch, the rest for the whole chunk at once
            def chunk_logits(images, keep=keep):
                features = front(images)
                masks = keep.view(len(keep), 1, channels, *[1] * (features.ndim - 2))
                return back((features.unsqueeze(0) * masks).flatten(0, 1))
            outcomes += _totals(chunk_logits, batches, len(chunk))
            continue
        for mask in keep:
            mask = mask.view(1, channels, 1, 1)
            hooks = [graph.model.get_submodule(end).register_forward_hook(
                lambda module, inputs, output, mask=mask: output * mask) for end in ends]
            try:
                outcomes += _totals(graph.model, batches)
            finally:
                for hook in hooks:
                    hook.remove()
    return outcomes


def gradient_outliers(model: Model, data: ImageData, s: float = 1.0, batches: int = 8,
                      batch_size: int = 128, seed: int = 0) -> dict:
    """Paper 04's criterion as a score: minus the outlier votes, since the report prunes the
    filters whose gradients stand out (a large gradient: a filter still far from fitting).
    The votes take few values (at most `batches` + 1), so ties are broken by a stated rule, not
    by the order of a sort: among filters with as many votes, the one with the larger mean
    gradient norm goes first (a fraction below one vote is subtracted, in proportion to it)."""
    norms = filter_gradient_norms(model, data, batches, batch_size, seed)
    votes = outlier_votes(norms, s)
    return {name: -count.float() - 0.5 * norms[name].mean(0) / norms[name].mean(0).max().clamp(min=1e-12)
            for name, count in votes.items()}


@torch.no_grad()
def kl_oracle(model: Model, data: ImageData, batch_size: int = 256,
              images_per_pass: int = 2048, fast: bool = True,
              layers: list[str] | None = None, divergence=None) -> dict:
    """Paper 03's score: for every filter, the mean over the images of
    KL[softmax(model) || softmax(model without that filter)]. Comparable across layers.

    fast=False runs the whole model once per filter, masking the filter's channel. The
    fast version (the same numbers) runs, per layer, the front of the network once; the
    consumer's output once, then, for many filters in one batched pass, that output minus
    each filter's term (a single-channel convolution); and only the rest of the network.
    `layers` limits the scoring to those convs. `divergence(logits, logits_without)`: the
    mean over the images of the divergence of one filter's removal (notebook 03's task, the
    learner's own), called once per filter and batch; by default `kl_divergence`, batched.
    """
    require_images(data, "the calibration data")
    graph = as_graph(model)
    model = graph.model
    was_training = model.training
    model.eval()
    try:
        return {link.conv: (kl_layer_fast(graph, link, data, batch_size, images_per_pass, divergence) if fast
                            else kl_layer_naive(model, link, data, batch_size, divergence)).cpu()
                for link in links(graph, layers)}
    finally:
        model.train(was_training)


def kl_layer_fast(model, link, data, batch_size=256, images_per_pass=2048, divergence=None):
    """The KL scores of one link's filters: the front once, the consumer's output minus
    each filter's term, the rest of the network on many filters at once. `divergence`:
    see `kl_oracle`."""
    front, middle, back = split_model(model, link.cut, link.consumer)
    consumer = model_of(model).get_submodule(link.consumer)
    device = model_device(model_of(model))
    totals = torch.zeros(link.channels, device=device)
    for images, _ in data.batches(batch_size, device=device):
        chunk = max(1, images_per_pass // len(images))  # filters per pass: few images, many filters
        channels_out = front(images)
        reference = middle(channels_out)
        logits = back(reference.clone())  # clone: back's ReLUs are in place
        for start in range(0, link.channels, chunk):
            channels = torch.arange(start, min(start + chunk, link.channels), device=device)
            terms = channel_contributions(consumer, channels_out, channels)
            without = (reference.unsqueeze(1) - terms).transpose(0, 1).flatten(0, 1)
            totals[channels] += _summed(logits, back(without).view(len(channels), len(images), -1), divergence)
    return totals / len(data)


def kl_divergence(logits: torch.Tensor, logits_without: torch.Tensor) -> torch.Tensor:
    """KL[softmax(logits) || softmax(logits_without)] per image (the last dimension holds the
    classes), from log-probabilities: exact where a network is sure of its class."""
    log_p, log_q = torch.log_softmax(logits, -1), torch.log_softmax(logits_without, -1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def _summed(logits: torch.Tensor, without: torch.Tensor, divergence) -> torch.Tensor:
    """Each filter's summed divergence over the images: `without` is (filters, images,
    classes). The learner's `divergence` (a mean over images, for one filter) runs on every
    filter at once under `torch.vmap` where its code allows (tensor operations only), else one
    filter at a time (a `.item()` in it, say)."""
    if divergence is None:
        return kl_divergence(logits, without).sum(-1)

    def one_filter(one):
        mean = divergence(logits, one)
        return mean.to(logits.dtype) if torch.is_tensor(mean) else torch.tensor(float(mean), device=logits.device)

    try:
        means = torch.vmap(one_filter)(without)
    except RuntimeError:
        means = torch.stack([one_filter(one) for one in without])
    return means.reshape(len(without)) * len(logits)


def kl_layer_naive(model, link, data, batch_size=256, divergence=None):
    """The KL scores of one link's filters, as the paper defines them: one forward pass of
    the whole network per filter, with the filter's channel zeroed where it is final.
    `divergence`: see `kl_oracle`."""
    cut = model.get_submodule(link.cut)
    device = model_device(model)
    totals = torch.zeros(link.channels, device=device)
    for images, _ in data.batches(batch_size, device=device):
        logits = model(images)
        for channel in range(link.channels):
            def drop(module, inputs, output, channel=channel):
                output = output.clone()
                output[:, channel] = 0
                return output
            hook = cut.register_forward_hook(drop)
            try:
                totals[channel] += _summed(logits, model(images).unsqueeze(0), divergence)[0]
            finally:
                hook.remove()
    return totals / len(data)


@torch.no_grad()
def thinet(model: Model, data: ImageData, per_image: int = 10, seed: int = 0,
           batch_size: int = 256, layers: list[str] | None = None, step=None) -> dict:
    """ThiNet's greedy channel selection (Luo et al.; Algorithm 1 of paper 04), as a score:
    for each conv, sample entries of the next layer's output and each channel's term in
    them, then grow the kept set one channel at a time, each time taking the channel that
    best fits what the kept set (least-squares scaled) still misses. A filter's score is
    how early it joined, so `lowest(scores, ratio)` is ThiNet's choice at every ratio.
    Scores are per layer only: ThiNet prunes layer by layer. `layers` limits the scoring.
    `step(terms, target, kept)`: one greedy step (notebook 04's task, the learner's own),
    called once per channel; by default the whole order at once (`thinet_selection`)."""
    graph = as_graph(model)
    model = graph.model
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    scores = {}
    try:
        for link in links(graph, layers):
            terms = sample_terms(graph, link, data, per_image, generator, batch_size)
            order = greedy_order(terms, terms.sum(1), link.channels, step).cpu()
            scores[link.conv] = torch.empty(link.channels).index_put_(
                (order,), torch.arange(link.channels, 0, -1, dtype=torch.float) - 1)
    finally:
        model.train(was_training)
    return scores


def _unit(scores: torch.Tensor) -> torch.Tensor:
    return (scores / scores.norm().clamp(min=1e-12)).cpu()
