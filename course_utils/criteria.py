"""Filter-importance criteria, one function each, all with the same shape.

    scores = criterion(model, data)   # {conv name: one score per filter}, higher = keep

`data` is an `ImageData` (the calibration images; weight-only criteria ignore it), and
every conv with groups=1 gets a score vector. `lowest(scores, ratio)` turns any of them
into a surgery plan, so a notebook or a table can swap criteria in one line.
"""

from __future__ import annotations

import copy
import math
import numbers

import torch
from torch import nn

from .device import model_device
from .chain import channel_contributions, check_layers, links, sampled_contributions
from .data import ImageData
from .metrics import count_parameters
from .surgery import ModelGraph, SurgeryError, remove_filters, scored_convs, split_model, trace


def random_scores(model: nn.Module, data: ImageData | None = None, seed: int = 0) -> dict:
    """Uniform random scores: the baseline every criterion must beat."""
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.rand(conv.out_channels, generator=generator)
            for name, conv in scored_convs(model).items()}


def l1_norm(model: nn.Module, data: ImageData | None = None) -> dict:
    """Sum of absolute weights of each filter (Li et al.; paper 02's Method 1)."""
    return {name: conv.weight.detach().abs().sum((1, 2, 3)).cpu()
            for name, conv in scored_convs(model).items()}


def l2_norm(model: nn.Module, data: ImageData | None = None) -> dict:
    """Euclidean norm of each filter's weights."""
    return {name: conv.weight.detach().flatten(1).norm(dim=1).cpu()
            for name, conv in scored_convs(model).items()}


def _hooked_passes(model, data: ImageData, batch_size: int, with_gradients: bool):
    """Yield, per batch, {conv name: the map its filter produces where zeroing it equals
    removing the filter} (`channel_ends`: after the conv's own batch norm), with `.grad`
    filled when asked."""
    check_data(data)
    ends = channel_ends(model)
    device = model_device(model)
    was_training = model.training
    model.eval()
    outputs, hooks = {}, []
    for conv, end in ends.items():
        def keep(module, inputs, output, conv=conv):
            if with_gradients:
                output.retain_grad()
            outputs[conv] = output
        hooks.append(model.get_submodule(end).register_forward_hook(keep))
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


def mean_activation(model: nn.Module, data: ImageData, batch_size: int = 256) -> dict:
    """Mean of each filter's ReLU-ed map over images and positions (paper 05's second
    criterion), normalised per layer to unit L2 norm. The map is read after the conv's
    batch norm, where a zero map means a removed filter."""
    sums: dict[str, torch.Tensor] = {}
    for outputs in _hooked_passes(model, data, batch_size, with_gradients=False):
        for name, output in outputs.items():
            total = output.relu().sum((0, 2, 3)) / output[0, 0].numel()
            sums[name] = sums.get(name, 0) + total.detach()
    return {name: _unit(total / len(data)) for name, total in sums.items()}


def taylor(model: nn.Module, data: ImageData, batch_size: int = 256) -> dict:
    """First-order Taylor (Molchanov et al. 2017, eq. 8): per image, |activation x gradient
    of the loss, summed over the map|, then the mean over images; normalised per layer to
    unit L2 norm (so summing or averaging over positions ranks alike). It estimates how much
    each image's loss changes when the filter's map is set to zero, so the map is read
    where zero means removed: after the conv's batch norm (before it, the norm's shift
    would bring a zeroed channel back). A ReLU in between changes nothing: where it cuts,
    both the activation and its gradient are zero. The members of a residual group lose a
    channel together, so their terms are added per image before the absolute value (the
    first-order change of removing the channel from the residual stream); every member
    gets the group's score."""
    per_image: dict[str, list[torch.Tensor]] = {}
    for outputs in _hooked_passes(model, data, batch_size, with_gradients=True):
        for name, output in outputs.items():
            per_image.setdefault(name, []).append((output * output.grad).sum((2, 3)).detach())
    terms = {name: torch.cat(parts) for name, parts in per_image.items()}  # (images, filters)
    for group in ModelGraph(model).groups:
        members = [conv for conv in group.convs if conv in terms]
        if len(members) > 1:
            joint = sum(terms[conv] for conv in members)
            terms.update({conv: joint for conv in members})
    return {name: _unit(contribution.abs().mean(0)) for name, contribution in terms.items()}


@torch.no_grad()
def deletion_effect(model: nn.Module, data: ImageData, group_size: int = 1,
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
    check_data(data)
    for name, value in (("group_size", group_size), ("groups_per_pass", groups_per_pass)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name} must be a whole number, at least 1, got {value}")
    device = model_device(model)
    was_training = model.training
    model.eval()
    batches = list(data.batches(batch_size, device=device))
    (base_correct, base_loss), = _totals(model, batches)
    convs, ends = scored_convs(model), channel_ends(model)
    scores = {}
    try:
        for group in ModelGraph(model).groups:
            members = [conv for conv in group.convs if conv in convs]
            if not members:
                continue
            channels = convs[members[0]].out_channels
            deleted = [slice(start, start + group_size) for start in range(0, channels, group_size)]
            outcomes = _deletion_totals(model, batches, [ends[conv] for conv in members], channels,
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


def _deletion_totals(model, batches, ends: list[str], channels: int, deleted: list[slice],
                     groups_per_pass: int, cut: bool) -> list[tuple[float, float]]:
    """`_totals` of the model with each `deleted` slice of channels zeroed after every module
    in `ends`: by a cut after the end where the model allows one (and `cut`), else by hooks."""
    try:
        front, back = split_model(model, ends[0]) if cut and len(ends) == 1 else (None, None)
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
            hooks = [model.get_submodule(end).register_forward_hook(
                lambda module, inputs, output, mask=mask: output * mask) for end in ends]
            try:
                outcomes += _totals(model, batches)
            finally:
                for hook in hooks:
                    hook.remove()
    return outcomes


def channel_ends(model: nn.Module) -> dict[str, str]:
    """{conv: the module after which zeroing a channel equals removing the conv's filter}:
    the batch norm that follows the conv alone (its shift would bring a zeroed channel
    back), else the conv itself. One trace for the whole model."""
    nodes = [n for n in trace(model).graph.nodes if n.op == "call_module"]
    ends = {}
    for conv in scored_convs(model):
        users = [n for n in nodes if any(i.op == "call_module" and i.target == conv
                                         for i in n.all_input_nodes)]
        follows_alone = len(users) == 1 and isinstance(
            model.get_submodule(users[0].target), nn.BatchNorm2d)
        ends[conv] = users[0].target if follows_alone else conv
    return ends


def filter_gradient_norms(model: nn.Module, data: ImageData, batches: int = 8,
                          batch_size: int = 128, seed: int = 0) -> dict:
    """Paper 04's raw statistic: on `batches` random training mini-batches, the gradient of
    the loss for each filter's weights, its norm over the kernel per input channel,
    averaged over input channels. Returns {conv: (batches, filters)}. The weights are not
    updated and the batch-norm statistics are restored: only the gradients are read."""
    check_data(data)
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


def gradient_outliers(model: nn.Module, data: ImageData, s: float = 1.0, batches: int = 8,
                      batch_size: int = 128, seed: int = 0) -> dict:
    """Paper 04's criterion as a score: minus the outlier votes, since the report prunes the
    filters whose gradients stand out (a large gradient: a filter still far from fitting)."""
    votes = outlier_votes(filter_gradient_norms(model, data, batches, batch_size, seed), s)
    return {name: -count.float() for name, count in votes.items()}


@torch.no_grad()
def kl_oracle(model: nn.Module, data: ImageData, batch_size: int = 256,
              images_per_pass: int = 2048, fast: bool = True,
              layers: list[str] | None = None) -> dict:
    """Paper 03's score: for every filter, the mean over the images of
    KL[softmax(model) || softmax(model without that filter)]. Comparable across layers.

    fast=False runs the whole model once per filter, masking the filter's channel. The
    fast version (the same numbers) runs, per layer, the front of the network once; the
    consumer's output once, then, for many filters in one batched pass, that output minus
    each filter's term (a single-channel convolution); and only the rest of the network.
    `layers` limits the scoring to those convs.
    """
    check_data(data)
    was_training = model.training
    model.eval()
    try:
        return {link.conv: (kl_layer_fast(model, link, data, batch_size, images_per_pass) if fast
                            else kl_layer_naive(model, link, data, batch_size)).cpu()
                for link in links(model, layers)}
    finally:
        model.train(was_training)


def kl_layer_fast(model, link, data, batch_size=256, images_per_pass=2048):
    """The KL scores of one link's filters: the front once, the consumer's output minus
    each filter's term, the rest of the network on many filters at once."""
    front, middle, back = split_model(model, link.cut, link.consumer)
    consumer = model.get_submodule(link.consumer)
    device = model_device(model)
    totals = torch.zeros(link.channels, device=device)
    for images, _ in data.batches(batch_size, device=device):
        chunk = max(1, images_per_pass // len(images))  # filters per pass: few images, many filters
        channels_out = front(images)
        reference = middle(channels_out)
        log_p = torch.log_softmax(back(reference.clone()), 1)  # clone: back's ReLUs are in place
        for start in range(0, link.channels, chunk):
            channels = torch.arange(start, min(start + chunk, link.channels), device=device)
            terms = channel_contributions(consumer, channels_out, channels)
            without = (reference.unsqueeze(1) - terms).transpose(0, 1).flatten(0, 1)
            log_q = torch.log_softmax(back(without), 1).view(len(channels), len(images), -1)
            totals[channels] += _kl(log_p, log_q).sum(1)
    return totals / len(data)


def kl_layer_naive(model, link, data, batch_size=256):
    """The KL scores of one link's filters, as the paper defines them: one forward pass of
    the whole network per filter, with the filter's channel zeroed where it is final."""
    cut = model.get_submodule(link.cut)
    device = model_device(model)
    totals = torch.zeros(link.channels, device=device)
    for images, _ in data.batches(batch_size, device=device):
        log_p = torch.log_softmax(model(images), 1)
        for channel in range(link.channels):
            def drop(module, inputs, output, channel=channel):
                output = output.clone()
                output[:, channel] = 0
                return output
            hook = cut.register_forward_hook(drop)
            try:
                totals[channel] += _kl(log_p, torch.log_softmax(model(images), 1)).sum()
            finally:
                hook.remove()
    return totals / len(data)


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL[p || q] per row (over the last dimension), from log-probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


@torch.no_grad()
def thinet(model: nn.Module, data: ImageData, per_image: int = 10, seed: int = 0,
           batch_size: int = 256, layers: list[str] | None = None) -> dict:
    """ThiNet's greedy channel selection (Luo et al.; Algorithm 1 of paper 04), as a score:
    for each conv, sample entries of the next layer's output and each channel's term in
    them, then grow the kept set one channel at a time, each time taking the channel that
    best fits what the kept set (least-squares scaled) still misses. A filter's score is
    how early it joined, so `lowest(scores, ratio)` is ThiNet's choice at every ratio.
    Scores are per layer only: ThiNet prunes layer by layer. `layers` limits the scoring."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    scores = {}
    try:
        for link in links(model, layers):
            terms = _thinet_sample(model, link, data, per_image, generator, batch_size)
            order = thinet_selection(terms, terms.sum(1)).cpu()
            scores[link.conv] = torch.empty(link.channels).index_put_(
                (order,), torch.arange(link.channels, 0, -1, dtype=torch.float) - 1)
    finally:
        model.train(was_training)
    return scores


def _thinet_sample(model, link, data, per_image, generator, batch_size) -> torch.Tensor:
    """Each channel's term at sampled entries of the consumer's output: (samples, channels)."""
    check_data(data)
    front, _ = split_model(model, link.cut)
    consumer = model.get_submodule(link.consumer)
    device = model_device(model)
    return torch.cat([sampled_contributions(consumer, front(images), per_image, generator)[0]
                      for images, _ in data.batches(batch_size, device=device)])


@torch.no_grad()
def thinet_prune(model: nn.Module, data: ImageData, conv: str, keep: int,
                 example_input: torch.Tensor, per_image: int = 10, seed: int = 0,
                 batch_size: int = 256) -> list[int]:
    """ThiNet on one layer, in place: choose `keep` of the conv's filters (Algorithm 1),
    remove the others, and fold the least-squares scaling of the kept channels into the
    consumer's weights, so that its output stays as close as it can to the unpruned one.
    Returns the kept filters."""
    link = links(model, [conv])[0]
    if not 0 < keep <= link.channels:
        raise ValueError(f"keep must lie between 1 and {link.channels} for {conv}, got {keep}")
    was_training = model.training
    model.eval()
    terms = _thinet_sample(model, link, data, per_image, torch.Generator().manual_seed(seed),
                           batch_size)
    kept = thinet_selection(terms, terms.sum(1))[:keep].sort().values
    scaling = thinet_scaling(terms[:, kept], terms.sum(1))
    kept = kept.tolist()
    remove_filters(model, example_input,
                   {conv: [c for c in range(link.channels) if c not in set(kept)]})
    consumer = model.get_submodule(link.consumer)
    columns = consumer.weight.view(consumer.weight.shape[0], len(kept), -1)  # a view: in place
    columns.mul_(scaling.to(columns.dtype).view(1, -1, 1))
    model.train(was_training)
    return kept


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


def _unit(scores: torch.Tensor) -> torch.Tensor:
    return (scores / scores.norm().clamp(min=1e-12)).cpu()


def check_ratio(ratio: float, name: str = "ratio") -> float:
    """A fraction of filters to remove must be a number strictly between 0 and 1."""
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 < ratio < 1:
        raise ValueError(f"{name} is a fraction of filters to remove and must be a number in (0, 1), "
                         f"got {ratio!r}")
    return ratio


def check_data(data: ImageData) -> ImageData:
    """Scores need images: an empty set would score nothing, and the plan would cut nothing."""
    if len(data) == 0:
        raise ValueError("the calibration data holds no images: a criterion needs some to score filters")
    return data


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
           round_to: int = 1, graph: ModelGraph | None = None) -> dict[str, list[int]]:
    """A plan removing a **share** of the filters in every scored layer (or only `layers`):
    the int(share x filters) with the lowest scores, keeping at least one filter per layer.
    On a model with residual groups, give it `group_scores` (one entry per group): surgery
    refuses a plan that cuts two members of a group differently.

    `round_to`: each layer keeps a multiple of that many filters, rounded up (Torch-Pruning's
    option of that name: vector units and tensor cores like channel counts in multiples of 8).
    `graph` (the model's `ModelGraph`): where a layer's channels pass through a grouped
    convolution, each of its groups loses its own lowest, as many as the others (surgery
    requires it); without a graph such a plan is refused there."""
    check_ratio(share, "share")
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
        kept = balanced_count(len(values), share, math.lcm(round_to, blocks))
        if kept < len(values):
            per_block = values.reshape(blocks, -1)
            cut = per_block.argsort(dim=1)[:, :(len(values) - kept) // blocks]
            offsets = torch.arange(blocks)[:, None] * per_block.shape[1]
            plan[name] = sorted((cut + offsets).flatten().tolist())
    return plan


def balanced_count(channels: int, share: float, unit: int = 1) -> int:
    """The filters a layer keeps when `lowest` removes `share` of them: all but int(share x
    channels), at least one, rounded up to a multiple of `unit` (and at most all)."""
    kept = channels - min(int(share * channels), channels - 1)
    return min(channels, math.ceil(kept / unit) * unit)


def group_scores(model: nn.Module, scores: dict[str, torch.Tensor],
                 example_input: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One score vector per prunable channel group, under its first member's name: the
    **mean** of its members' scores for each shared channel. For Taylor and the deletion
    effect every member already carries the group's joint score (the channel removed from
    the whole residual stream), so the mean is that score; for a weight norm it is the
    group's norm (every weight that goes with the channel) over its number of members,
    which keeps a group comparable with a single layer in a global ranking. A group of one
    conv keeps its own scores. `lowest` on the result cuts each group once."""
    graph = ModelGraph(model, example_input)
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


def keep_for_parameters(model: nn.Module, target: float, layers: list[str],
                        example_input: torch.Tensor, reference: int | None = None,
                        steps: int = 14) -> float:
    """The largest share of filters every conv of `layers` can keep (rounded by
    `kept_count`) so that the parameters left are at most `target` x `reference` (default:
    the model's own). A bisection on copies: the model is not changed."""
    check_ratio(target, "target (remaining / initial parameters)")
    reference = reference or count_parameters(model)

    def remaining(keep):
        pruned = remove_filters(copy.deepcopy(model), example_input, keeping(model, keep, layers))
        return count_parameters(pruned) / reference
    low, high = 1e-3, 1.0
    if remaining(low) > target:
        raise ValueError(f"even one filter per layer of {layers} leaves more than {target} of "
                         f"the parameters; prune more layers")
    for _ in range(steps):
        middle = (low + high) / 2
        low, high = (middle, high) if remaining(middle) <= target else (low, middle)
    return low


def reducible_scores(model: nn.Module, scores: dict[str, torch.Tensor],
                     example_input: torch.Tensor | None = None,
                     residual_groups: bool = False) -> dict[str, torch.Tensor]:
    """Paper 05's candidates for removal: the `group_scores` of the convs its rule lets us
    reduce (`ModelGraph.reducible`), with or without the residual groups."""
    reducible = ModelGraph(model, example_input).reducible(residual_groups)
    grouped = group_scores(model, scores, example_input)
    return {conv: grouped[conv] for conv in reducible}


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
