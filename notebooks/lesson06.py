"""Notebook 06's lesson, kept beside it: the *Your turn* task (a criterion of your own), its
exercises' answers and its highlights. The notebook binds them to its run's objects."""

from __future__ import annotations

import torch
from torch import nn

from course_utils.grading import Case, Check, Task, tensor_off
from course_utils.harness.highlights import Highlight
from course_utils.metrics import non_dominated
from course_utils.scores import l1_norm

# ---------------------------------------------------------------- Your turn: a criterion of your own


def _planted_network() -> tuple[nn.Module, dict[str, int]]:
    """A small conv -> batch norm -> ReLU network (3 x 32 x 32 inputs) with one useless filter
    planted in each conv (zero weights, bias, scale and shift: its map is zero)."""
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


def _cases() -> list[Case]:
    return [Case("a conv -> norm -> ReLU network with a useless filter planted in each conv",
                 (*_planted_network()[:1], 0))]


def _compare_criterion(answer, _, arguments) -> str | None:
    """Any criterion passes that scores every conv's filters and ranks each planted filter first to go."""
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


def l1_scores(model: nn.Module, seed: int) -> dict:
    """The course's criterion for the check, with the contestants' signature: each filter's L1 norm."""
    return l1_norm(model)


TASK = Task("own_criterion", _cases, l1_scores, _compare_criterion)

# ---------------------------------------------------------------- the exercises' answers


def rank_one(ranks, model_name: str) -> Check:
    return Check(set(ranks[ranks == 1].index), f"rank 1 on {model_name}")


def non_dominated_points(costs, values) -> Check:
    return Check(non_dominated(costs, values), "non-dominated points")


def points_on_front(runs) -> Check:
    """(criterion, budget) points of `runs` on the front of mean test accuracy against FLOPs."""
    points = runs.groupby(["criterion", "budget"]).agg(flops=("flops", "mean"), accuracy=("test_after", "mean"))
    return Check(sum(non_dominated(points.flops, points.accuracy)), "points on the front")


def extra_filters(removed: int, baseline: int, what: str) -> Check:
    return Check(removed - baseline, what)


HIGHLIGHTS = [
    Highlight("VGG-16, criteria in tiers", "vgg16_ranking", "text"),
    Highlight("ResNet-18, criteria in tiers", "resnet18_ranking", "text"),
]
