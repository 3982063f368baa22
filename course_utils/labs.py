"""Implement-it tasks: in each notebook the student writes its paper's core step, and
`check_task` tests it.

    def taylor_score(activation, gradient): ...   # the student's function, in the notebook
    check_task("taylor_score", taylor_score)      # prints the verdict, returns True or False

A task runs the student's function on small random cases and on the edge cases that
matter (a dead filter, a batch norm with a shift, a layer left with one filter, a channel
that copies another, logits a float cannot exponentiate), compares each answer with the
course's own implementation, and says which case fails and how far off it is, never the
reference's code or values. A stub that raises NotImplementedError is "not implemented
yet". Whatever the verdict, the notebook goes on with the course's own code, so a wrong
or missing answer never breaks the rest of it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .scores import l1_norm
from .superclasses import merge_penalty as _merge_penalty


@dataclass(frozen=True)
class Case:
    name: str  # what the case is, as a message names it
    arguments: tuple


@dataclass(frozen=True)
class Task:
    cases: Callable[[], list[Case]]  # built afresh for every check
    reference: Callable
    compare: Callable  # (answer, expected, arguments) -> what is off, or None
    instead: str  # what the notebook uses from here on


def check_task(name: str, candidate: Callable) -> bool:
    """Run `candidate` on every case of task `name`; print the verdict, return it."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; the tasks are {', '.join(TASKS)}")
    task = TASKS[name]
    cases = task.cases()
    for case in cases:
        try:
            answer = candidate(*copy.deepcopy(case.arguments))
        except NotImplementedError:
            return _verdict(name, False, f"not implemented yet; the notebook goes on with {task.instead}")
        except Exception as error:  # noqa: BLE001 (the student's code: say what it raised, go on)
            return _verdict(name, False, f"on {case.name} it raised {type(error).__name__}: {error}; "
                                         f"the notebook goes on with {task.instead}")
        off = task.compare(answer, task.reference(*copy.deepcopy(case.arguments)), case.arguments)
        if off is not None:
            return _verdict(name, False, f"not yet: on {case.name}, {off}; "
                                         f"the notebook goes on with {task.instead}")
    return _verdict(name, True, f"passed all {len(cases)} cases ({'; '.join(c.name for c in cases)})")


def _verdict(name: str, passed: bool, message: str) -> bool:
    print(f"{name}: {message}")
    return passed


# --- how far off an answer is -------------------------------------------------------------

def tensor_off(answer, expected: torch.Tensor, what: str, tolerance: float = 1e-4) -> str | None:
    """What differs between two tensors: type, shape, non-finite entries, values (the
    largest difference, and a constant factor when every entry is off by the same one)."""
    if not torch.is_tensor(answer):
        return f"{what}: a {type(answer).__name__} where a tensor should be"
    if tuple(answer.shape) != tuple(expected.shape):
        return f"{what}: shape {tuple(answer.shape)} where it should be {tuple(expected.shape)}"
    answer, expected = answer.detach().double().cpu(), expected.detach().double().cpu()
    if not torch.isfinite(answer).all():
        return f"{what}: {int((~torch.isfinite(answer)).sum())} NaN or infinite entries"
    gap = (answer - expected).abs()
    scale = expected.abs().max().item() or 1.0
    if gap.max().item() <= tolerance * scale:
        return None
    share = int((gap > tolerance * scale).sum())
    factor = _constant_factor(answer, expected)
    if factor is not None:
        return f"{what}: every entry {factor:.3g} times what it should be"
    return (f"{what}: off in {share} of {gap.numel()} entries, by up to {gap.max().item():.3g} "
            f"({gap.max().item() / scale:.1%} of its largest entry)")


def _constant_factor(answer: torch.Tensor, expected: torch.Tensor) -> float | None:
    nonzero = expected.abs() > 1e-12
    if not nonzero.any() or (answer[~nonzero].abs() > 1e-12).any():
        return None
    ratios = answer[nonzero] / expected[nonzero]
    same = torch.allclose(ratios, ratios[0], rtol=1e-4) and abs(ratios[0].item()) > 1e-9
    return ratios[0].item() if same else None


def number_off(answer, expected: float, what: str, tolerance: float = 1e-4) -> str | None:
    if isinstance(answer, torch.Tensor) and answer.numel() == 1:
        answer = answer.item()
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        return f"{what}: a {type(answer).__name__} where a number should be"
    if not math.isfinite(answer):
        return f"{what}: {answer}"
    if math.isclose(answer, expected, rel_tol=tolerance, abs_tol=1e-9):
        return None
    direction = "too high" if answer > expected else "too low"
    if expected == 0:
        return f"{what}: {direction}; it should be zero here"
    return f"{what}: {direction} by {abs(answer - expected) / abs(expected):.0%}"


# --- 00: remove one filter through a batch norm ----------------------------------------------

def remove_filter(conv: nn.Conv2d, norm: nn.BatchNorm2d, next_conv: nn.Conv2d, j: int):
    """The course's answer to notebook 00's task: new (conv, norm, next_conv) without filter j."""
    keep = [c for c in range(conv.out_channels) if c != j]
    first = nn.Conv2d(conv.in_channels, len(keep), conv.kernel_size, conv.stride, conv.padding,
                      bias=conv.bias is not None)
    middle = nn.BatchNorm2d(len(keep), eps=norm.eps, momentum=norm.momentum)
    second = nn.Conv2d(len(keep), next_conv.out_channels, next_conv.kernel_size, next_conv.stride,
                       next_conv.padding, bias=next_conv.bias is not None)
    with torch.no_grad():
        first.weight.copy_(conv.weight[keep])
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(middle, name).copy_(getattr(norm, name)[keep])
        second.weight.copy_(next_conv.weight[:, keep])
        if conv.bias is not None:
            first.bias.copy_(conv.bias[keep])
        if next_conv.bias is not None:
            second.bias.copy_(next_conv.bias)
    return first.to(conv.weight.device), middle.to(conv.weight.device).eval(), second.to(conv.weight.device)


def _conv_norm_conv(filters: int, seed: int, bias: bool = True):
    generator = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(2, filters, 3, padding=1, bias=bias)
    norm = nn.BatchNorm2d(filters)
    next_conv = nn.Conv2d(filters, 3, 3, padding=1, bias=bias)
    with torch.no_grad():
        for tensor in (*conv.parameters(), *next_conv.parameters(), norm.weight, norm.bias, norm.running_mean):
            tensor.copy_(torch.randn(tensor.shape, generator=generator))  # a shift that is not zero
        norm.running_var.copy_(torch.rand(filters, generator=generator) + 0.5)
    return conv, norm.eval(), next_conv


_PARTS = ("the conv", "the batch norm", "the next conv")


def _compare_layers(answer, expected, arguments) -> str | None:
    if not isinstance(answer, (tuple, list)) or len(answer) != 3 or \
            not all(isinstance(m, nn.Module) for m in answer):
        return "return the three layers: (conv, norm, next_conv)"
    for part, mine, right in zip(_PARTS, answer, expected):
        mine_state = {k: v for k, v in mine.state_dict().items() if k != "num_batches_tracked"}
        right_state = {k: v for k, v in right.state_dict().items() if k != "num_batches_tracked"}
        if set(mine_state) != set(right_state):
            return f"{part}: tensors {sorted(mine_state)} where they should be {sorted(right_state)}"
        for key, tensor in right_state.items():
            off = tensor_off(mine_state[key], tensor, f"{part}'s {key}", tolerance=1e-6)
            if off is not None:
                return off
    x = torch.randn(2, arguments[0].in_channels, 6, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mine = answer[2](answer[1].eval()(answer[0](x)))
        right = expected[2](expected[1](expected[0](x)))
    return tensor_off(mine, right, "the output of the three layers")


def _remove_filter_cases() -> list[Case]:
    return [Case("a conv -> batch norm -> conv, filter 1 of 4 removed", (*_conv_norm_conv(4, 0), 1)),
            Case("the first filter (j = 0)", (*_conv_norm_conv(5, 1), 0)),
            Case("the last filter", (*_conv_norm_conv(5, 2), 4)),
            Case("convolutions without biases", (*_conv_norm_conv(4, 3, bias=False), 2)),
            Case("a layer of 2 filters, one left", (*_conv_norm_conv(2, 4), 0))]


# --- 01: the merge penalty of two classes ----------------------------------------------------

def _bits(text: str) -> torch.Tensor:
    return torch.tensor([c == "1" for c in text])


def _merge_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.rand(12, generator=generator) > 0.5 for _ in range(2))
    return [Case("two random response vectors of 12 groups", (a, b)),
            Case("two equal vectors", (_bits("0110100"), _bits("0110100"))),
            Case("a class that responds to no group", (_bits("0000000"), _bits("0110101"))),
            Case("two classes with no group in common", (_bits("1100000"), _bits("0011110"))),
            Case("one class's groups inside the other's", (_bits("0100100"), _bits("1110110")))]


# --- 02: one step of k-means -----------------------------------------------------------------

def kmeans_step(values: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """The course's answer to notebook 02's task: one Lloyd step in one dimension."""
    nearest = (values[:, None] - centroids[None, :]).abs().argmin(1)
    counts = torch.bincount(nearest, minlength=len(centroids)).to(values.dtype)
    sums = torch.zeros_like(centroids).index_add_(0, nearest, values)
    return torch.where(counts > 0, sums / counts.clamp(min=1), centroids)


def _kmeans_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(200, generator=generator, dtype=torch.float64)
    return [Case("200 weights and 4 centroids", (values, torch.tensor([-1.0, -0.2, 0.3, 1.1], dtype=torch.float64))),
            Case("a centroid no weight is nearest to (an empty cluster)",
                 (values, torch.tensor([-0.5, 0.5, 9.0], dtype=torch.float64))),
            Case("a single centroid", (values, torch.tensor([0.7], dtype=torch.float64))),
            Case("centroids not in sorted order", (values, torch.tensor([0.8, -0.9, 0.1], dtype=torch.float64)))]


# --- 03: the KL score of one filter ----------------------------------------------------------

def kl_score(logits: torch.Tensor, logits_without: torch.Tensor) -> float:
    """The course's answer to notebook 03's task: the mean over images of
    KL[softmax(logits) || softmax(logits_without)] (eq. 4's order)."""
    log_p, log_q = torch.log_softmax(logits.double(), 1), torch.log_softmax(logits_without.double(), 1)
    return (log_p.exp() * (log_p - log_q)).sum(1).mean().item()


def _kl_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 10, generator=generator)
    moved = logits + 0.8 * torch.randn(8, 10, generator=generator)
    confident = logits.clone()
    confident[:, 3] += 120.0  # a network sure of class 3: exp() of these overflows a float
    return [Case("8 images, 10 classes", (logits, moved)),
            Case("a filter whose removal changes nothing", (logits, logits.clone())),
            Case("one image", (logits[:1], moved[:1])),
            Case("a network sure of its class (logits 120 apart)", (confident, moved))]


# --- 04: one greedy step of ThiNet -----------------------------------------------------------

RIDGE = 1e-8  # the report's own fix (paper 04), as in course_utils.thinet.thinet_scaling


def _fit_error(terms: torch.Tensor, target: torch.Tensor, kept: list[int]) -> float:
    """Squared error of rebuilding target from the kept channels' terms, least-squares scaled."""
    if not kept:
        return float((target ** 2).sum())
    x = terms[:, kept]
    weights = torch.linalg.solve(x.T @ x + RIDGE * torch.eye(len(kept), dtype=x.dtype), x.T @ target)
    return float(((target - x @ weights) ** 2).sum())


def thinet_next_channel(terms: torch.Tensor, target: torch.Tensor, kept: list[int]) -> int:
    """The course's answer to notebook 04's task: the channel whose term, scaled, best fits
    what the kept channels (least-squares scaled) still miss of the target."""
    x, y = terms.double(), target.double()
    residual = y
    if kept:
        columns = x[:, kept]
        weights = torch.linalg.solve(columns.T @ columns + RIDGE * torch.eye(len(kept), dtype=x.dtype),
                                     columns.T @ y)
        residual = y - columns @ weights
    gain = (x.T @ residual) ** 2 / ((x ** 2).sum(0) + RIDGE)
    gain[kept] = -math.inf
    return int(gain.argmax())


def _compare_channel(answer, expected: int, arguments) -> str | None:
    terms, target, kept = (argument.double() if torch.is_tensor(argument) else argument for argument in arguments)
    if isinstance(answer, torch.Tensor) and answer.numel() == 1:
        answer = int(answer.item())
    if isinstance(answer, bool) or not isinstance(answer, int):
        return f"return one channel number (an int), not {type(answer).__name__}"
    if not 0 <= answer < terms.shape[1]:
        return f"channel {answer} does not exist (there are {terms.shape[1]})"
    if answer in kept:
        return f"channel {answer} is already kept"
    mine, best = _fit_error(terms, target, [*kept, answer]), _fit_error(terms, target, [*kept, expected])
    if mine <= best * (1 + 1e-9) + 1e-12:
        return None  # a tie: as good as the reference's choice
    return f"adding channel {answer} leaves {mine / best:.3g} times the error the best channel leaves"


def _thinet_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(0)
    terms = torch.randn(60, 6, generator=generator) * torch.tensor([1.0, 3.0, 0.5, 2.0, 1.5, 0.8])
    dead = terms.clone()
    dead[:, 2] = 0
    copied = terms.clone()
    copied[:, 5] = 2 * copied[:, 1]  # a channel that copies a kept one: it adds nothing
    return [Case("6 channels, none kept yet", (terms, terms.sum(1), [])),
            Case("6 channels, channels 1 and 3 kept", (terms, terms.sum(1), [1, 3])),
            Case("a dead channel (zero in every sample)", (dead, dead.sum(1), [])),
            Case("a channel that copies a kept one", (copied, copied.sum(1), [1]))]


# --- 05: the Taylor score of a layer's filters -----------------------------------------------

def taylor_score(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """The course's answer to notebook 05's task: per filter, the mean over images of
    |the mean over the map's positions of activation x gradient| (Molchanov et al., eq. 8)."""
    return (activation * gradient).mean((2, 3)).abs().mean(0)


def _taylor_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(0)
    activation, gradient = torch.randn(4, 3, 5, 5, generator=generator), torch.randn(4, 3, 5, 5, generator=generator)
    dead = activation.clone()
    dead[:, 1] = 0
    opposite = activation.clone()
    opposite[1] = activation[0]
    both_ways = gradient.clone()
    both_ways[1] = -gradient[0]  # image 1's loss moves against image 0's
    return [Case("4 images, 3 filters, 5 x 5 maps", (activation, gradient)),
            Case("a dead filter (its map zero everywhere)", (dead, gradient)),
            Case("one image", (activation[:1], gradient[:1])),
            Case("two images whose losses move in opposite directions", (opposite[:2], both_ways[:2])),
            Case("1 x 1 maps", (activation[:, :, :1, :1], gradient[:, :, :1, :1]))]


# --- 06: a criterion of your own -------------------------------------------------------------

def _planted_network() -> tuple[nn.Module, dict[str, int]]:
    """A small conv -> batch norm -> ReLU network (3 x 32 x 32 inputs) with one useless
    filter planted in each conv (zero weights, bias, scale and shift: its map is zero)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 10))
    planted = {"0": 5, "3": 2}
    with torch.no_grad():
        for conv, filter_index in planted.items():
            norm = model[int(conv) + 1]
            for tensor in (model[int(conv)].weight, model[int(conv)].bias, norm.weight, norm.bias):
                tensor[filter_index] = 0
    return model.eval(), planted


def _criterion_cases() -> list[Case]:
    return [Case("a conv -> norm -> ReLU network with a useless filter planted in each conv",
                 (*_planted_network()[:1], 0))]


def _compare_criterion(answer, _, arguments) -> str | None:
    model, planted = arguments[0], _planted_network()[1]
    if not isinstance(answer, dict):
        return f"return {{conv name: one score per filter}}, not a {type(answer).__name__}"
    convs = {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    missing = sorted(set(convs) - set(answer))
    if missing:
        return f"no scores for the convs {missing} (every conv needs its own)"
    for name, conv in convs.items():
        off = tensor_off(answer[name], torch.zeros(conv.out_channels), f"the scores of conv {name!r}")
        if off is not None and ("shape" in off or "NaN" in off or "where a tensor" in off):
            return off
        ranking = answer[name].detach().double().cpu().argsort(stable=True)
        place = int((ranking == planted[name]).nonzero()) + 1
        ties = int((answer[name] == answer[name][planted[name]]).sum()) - 1
        if ties or place != 1:
            tied = f", tied with {ties} others" if ties else ""
            return (f"the planted useless filter of conv {name!r} is number {place} of {conv.out_channels} "
                    f"to go{tied}; a filter whose map is zero should go first (the lowest score)")
    return None


TASKS: dict[str, Task] = {
    "remove_filter": Task(_remove_filter_cases, remove_filter, _compare_layers,
                          "course_utils.surgery.remove_filters, which does this for any network"),
    "merge_cost": Task(_merge_cases, _merge_penalty,
                          lambda answer, expected, _: number_off(answer, expected, "the penalty", 0),
                          "course_utils.superclasses.merge_penalty"),
    "kmeans_step": Task(_kmeans_cases, kmeans_step,
                        lambda answer, expected, _: tensor_off(answer, expected, "the new centroids"),
                        "course_utils.compression.kmeans_1d (Lloyd's steps until nothing moves)"),
    "kl_score": Task(_kl_cases, kl_score, lambda answer, expected, _: number_off(answer, expected, "the score"),
                     "course_utils.scores.kl_oracle"),
    "thinet_next_channel": Task(_thinet_cases, thinet_next_channel, _compare_channel,
                                "course_utils.thinet.thinet_selection (every step at once, on the Gram matrix)"),
    "taylor_score": Task(_taylor_cases, taylor_score,
                         lambda answer, expected, _: tensor_off(answer, expected, "the scores"),
                         "course_utils.scores.taylor (read after each conv's batch norm)"),
    "own_criterion": Task(_criterion_cases, lambda model, seed: l1_norm(model), _compare_criterion,
                          "the shootout's own criteria (yours joins them when it passes)"),
}
