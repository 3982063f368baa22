"""The implement-it tasks (course_utils.labs): a right answer, written the way a student
would, passes; each plausible wrong one fails with a message that names what is off; a stub
is "not implemented yet"; and the messages never print the reference's values."""

import copy

import pytest
import torch
from torch import nn

from course_utils import labs
from course_utils.labs import check_task


def verdict(capsys, name, candidate):
    passed = check_task(name, candidate)
    return passed, capsys.readouterr().out


def fails_saying(capsys, name, candidate, *words):
    passed, message = verdict(capsys, name, candidate)
    assert not passed and message.startswith(f"{name}: not yet: on "), message
    for word in words:
        assert word in message, message
    assert "the notebook goes on with" in message
    return message


@pytest.mark.parametrize("name", list(labs.TASKS))
def test_the_reference_passes_and_a_stub_is_not_implemented_yet(capsys, name):
    assert verdict(capsys, name, labs.TASKS[name].reference)[0]

    def stub(*arguments):
        raise NotImplementedError

    passed, message = verdict(capsys, name, stub)
    assert not passed and "not implemented yet" in message


def test_an_answer_that_crashes_is_named_with_its_case(capsys):
    passed, message = verdict(capsys, "taylor_score", lambda a, g: a.view(7, -1))
    assert not passed and "on 4 images, 3 filters" in message and "raised RuntimeError" in message


def test_an_unknown_task_is_refused():
    with pytest.raises(ValueError, match="unknown task 'taylor'"):
        check_task("taylor", lambda: None)


# --- 00 -----------------------------------------------------------------------------------

def by_slicing(conv, norm, next_conv, j, slice_norm=True, keep_statistics=True, columns=True):
    """A student's remove_filter, editing copies in place; the flags plant the usual mistakes."""
    keep = [c for c in range(conv.out_channels) if c != j]
    conv, norm, next_conv = copy.deepcopy(conv), copy.deepcopy(norm), copy.deepcopy(next_conv)
    conv.weight = nn.Parameter(conv.weight.data[keep])
    if conv.bias is not None:
        conv.bias = nn.Parameter(conv.bias.data[keep])
    conv.out_channels = len(keep)
    if slice_norm:
        norm.weight, norm.bias = nn.Parameter(norm.weight.data[keep]), nn.Parameter(norm.bias.data[keep])
        if keep_statistics:
            norm.running_mean, norm.running_var = norm.running_mean[keep], norm.running_var[keep]
        else:
            norm.running_mean, norm.running_var = torch.zeros(len(keep)), torch.ones(len(keep))
        norm.num_features = len(keep)
    if columns:  # the next conv reads one input channel fewer
        next_conv.weight = nn.Parameter(next_conv.weight.data[:, keep])
        next_conv.in_channels = len(keep)
    return conv, norm, next_conv


def test_remove_filter_in_place_passes_and_its_mistakes_are_named(capsys):
    assert verdict(capsys, "remove_filter", by_slicing)[0]
    fails_saying(capsys, "remove_filter", lambda *a: by_slicing(*a, slice_norm=False),
                 "the batch norm's", "shape (4,) where it should be (3,)")
    fails_saying(capsys, "remove_filter", lambda *a: by_slicing(*a, keep_statistics=False),
                 "the batch norm's running_mean: off")
    fails_saying(capsys, "remove_filter", lambda *a: by_slicing(*a, columns=False),
                 "the next conv's weight: shape")


# --- 01 -----------------------------------------------------------------------------------

def test_merge_cost_mistakes_are_named(capsys):
    def counted(a, b):  # the same rule, in plain Python
        ones_a, ones_b = sum(map(bool, a)), sum(map(bool, b))
        union = sum(x or y for x, y in zip(a.tolist(), b.tolist()))
        return union - max(ones_a, ones_b) + abs(ones_a - ones_b)

    assert verdict(capsys, "merge_cost", counted)[0]
    fails_saying(capsys, "merge_cost", lambda a, b: int((a | b).sum()) - max(int(a.sum()), int(b.sum())),
                 "the penalty: too low")  # the distance penalty forgotten
    fails_saying(capsys, "merge_cost", lambda a, b: int((a | b).sum()) + abs(int(a.sum()) - int(b.sum())),
                 "the penalty: too high")  # the union not reduced by the larger class


# --- 02 -----------------------------------------------------------------------------------

def test_kmeans_step_mistakes_are_named(capsys):
    def with_a_loop(values, centroids):
        new = centroids.clone()
        nearest = (values[:, None] - centroids).abs().argmin(1)
        for k in range(len(centroids)):
            if (nearest == k).any():
                new[k] = values[nearest == k].mean()
        return new

    assert verdict(capsys, "kmeans_step", with_a_loop)[0]

    def empty_is_nan(values, centroids):
        nearest = (values[:, None] - centroids).abs().argmin(1)
        return torch.stack([values[nearest == k].mean() for k in range(len(centroids))])

    fails_saying(capsys, "kmeans_step", empty_is_nan, "an empty cluster", "NaN")

    def sorted_again(values, centroids):  # right means, but the order of the centroids lost
        return labs.kmeans_step(values, centroids).sort().values

    fails_saying(capsys, "kmeans_step", sorted_again, "not in sorted order")

    def median(values, centroids):
        nearest = (values[:, None] - centroids).abs().argmin(1)
        return torch.stack([values[nearest == k].median() if (nearest == k).any() else centroids[k]
                            for k in range(len(centroids))])

    fails_saying(capsys, "kmeans_step", median, "the new centroids: off")


# --- 03 -----------------------------------------------------------------------------------

def test_kl_score_mistakes_are_named(capsys):
    def with_kl_div(logits, logits_without):  # torch's own, target first
        return torch.nn.functional.kl_div(torch.log_softmax(logits_without, 1), torch.log_softmax(logits, 1),
                                          reduction="batchmean", log_target=True).item()

    assert verdict(capsys, "kl_score", with_kl_div)[0]

    def other_order(logits, logits_without):
        return with_kl_div(logits_without, logits)

    fails_saying(capsys, "kl_score", other_order, "8 images", "the score: too")

    def summed(logits, logits_without):
        return with_kl_div(logits, logits_without) * len(logits)

    fails_saying(capsys, "kl_score", summed, "too high by 700%")

    def naive(logits, logits_without):  # softmax, then log: 0 x log 0 where the network is sure
        p, q = torch.softmax(logits, 1), torch.softmax(logits_without, 1)
        return (p * (p / q).log()).sum(1).mean().item()

    fails_saying(capsys, "kl_score", naive, "sure of its class", "nan")


# --- 04 -----------------------------------------------------------------------------------

def test_thinet_step_mistakes_are_named(capsys):
    def by_trying_each(terms, target, kept):  # refit with every candidate, keep the best
        errors = {c: labs._fit_error(terms.double(), target.double(), [*kept, c])
                  for c in range(terms.shape[1]) if c not in kept}
        return min(errors, key=errors.get)

    assert verdict(capsys, "thinet_next_channel", by_trying_each)[0]

    def worst(terms, target, kept):  # the largest error instead of the smallest
        errors = {c: labs._fit_error(terms.double(), target.double(), [*kept, c])
                  for c in range(terms.shape[1]) if c not in kept}
        return max(errors, key=errors.get)

    fails_saying(capsys, "thinet_next_channel", worst, "none kept yet", "times the error")

    def ignoring_the_kept(terms, target, kept):  # fits the target, not what the kept set misses
        gain = (terms.T @ target) ** 2 / (terms ** 2).sum(0)
        gain[kept] = -1
        return int(gain.argmax())

    fails_saying(capsys, "thinet_next_channel", ignoring_the_kept, "kept", "times the error")

    def without_ridge(terms, target, kept):  # 0 / 0 on a dead channel
        residual = target - (terms[:, kept] @ torch.linalg.lstsq(terms[:, kept], target).solution if kept else 0)
        gain = (terms.T @ residual) ** 2 / (terms ** 2).sum(0)
        gain[kept] = -1
        return int(gain.argmax())

    fails_saying(capsys, "thinet_next_channel", without_ridge, "a dead channel")


# --- 05 -----------------------------------------------------------------------------------

def test_taylor_score_mistakes_are_named(capsys):
    def loop(activation, gradient):
        return torch.stack([torch.stack([(a[k] * g[k]).mean().abs() for a, g in zip(activation, gradient)]).mean()
                            for k in range(activation.shape[1])])

    assert verdict(capsys, "taylor_score", loop)[0]
    fails_saying(capsys, "taylor_score", lambda a, g: (a * g).mean((2, 3)).mean(0).abs(),
                 "4 images")  # the absolute value last: images cancel
    fails_saying(capsys, "taylor_score", lambda a, g: (a * g).abs().mean((2, 3, 0)),
                 "4 images")  # the absolute value of every position
    fails_saying(capsys, "taylor_score", lambda a, g: (a * g).sum((2, 3)).abs().mean(0),
                 "the scores: every entry 25 times")  # summed over the map, not averaged


def test_no_message_prints_the_references_values(capsys):
    """A wrong KL score is told how far off it is, never the score itself."""
    message = fails_saying(capsys, "kl_score", lambda logits, without: 0.123456789, "too")
    case = labs._kl_cases()[0]
    right = labs.kl_score(*case.arguments)
    assert f"{right:.3g}" not in message and f"{right:.2f}" not in message


# --- 06 -----------------------------------------------------------------------------------

def test_a_criterion_of_ones_own_must_rank_the_planted_filter_first_to_go(capsys):
    from course_utils.scores import l1_norm, random_scores

    assert verdict(capsys, "own_criterion", lambda model, seed: l1_norm(model))[0]
    fails_saying(capsys, "own_criterion", lambda model, seed: {n: -s for n, s in l1_norm(model).items()},
                 "the planted useless filter of conv '0' is number 8 of 8 to go")  # higher removed first
    fails_saying(capsys, "own_criterion", lambda model, seed: random_scores(model, seed=seed),
                 "the planted useless filter")
    fails_saying(capsys, "own_criterion", lambda model, seed: {n: s.sum() for n, s in l1_norm(model).items()},
                 "scores of conv '0': shape () where it should be (8,)")  # one score per layer
    fails_saying(capsys, "own_criterion", lambda model, seed: dict(list(l1_norm(model).items())[:1]),
                 "no scores for the convs ['3']")
