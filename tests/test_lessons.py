"""The *Your turn* tasks of the lesson modules (notebooks/lessonNN.py, judged by
course_utils.grading): a right answer, written the way a learner would, passes and is the
function the notebook goes on with; each plausible wrong one fails with a message that names
its case and what is off, and the notebook goes on with the course's; a stub is "not
implemented yet"; no message prints the course's values; the optimised code is not shown
before the learner's passes."""

import copy
import math

import pytest
import torch
from torch import nn

from course_utils.grading import check_task, lesson_module, reveal

LESSONS = {number: lesson_module(number) for number in ("00", "01", "02", "03", "04", "05", "06", "07", "08", "09")}


def passes(capsys, number, candidate):
    task = LESSONS[number].TASK
    returned = check_task(task, candidate)
    message = capsys.readouterr().out
    assert task.passed and returned is candidate and "passed all" in message, message


def fails_saying(capsys, number, candidate, *words):
    task = LESSONS[number].TASK
    returned = check_task(task, candidate)
    message = capsys.readouterr().out
    assert not task.passed and returned is task.reference, message
    assert message.startswith(f"✘ {task.name}: ") and "the notebook goes on with the course's" in message, message
    for word in words:
        assert word in message, message
    return message


@pytest.mark.parametrize("number", LESSONS)
def test_the_reference_passes_and_a_stub_is_not_implemented_yet(capsys, number):
    passes(capsys, number, LESSONS[number].TASK.reference)

    def stub(*arguments):
        raise NotImplementedError

    task = LESSONS[number].TASK
    assert check_task(task, stub) is task.reference and not task.passed
    assert "not implemented yet" in capsys.readouterr().out


def test_an_answer_that_crashes_is_named_with_its_case_and_the_learners_line(capsys):
    def crashing(activation, gradient):
        return activation.view(7, -1)

    message = fails_saying(capsys, "05", crashing, "on 4 images, 3 filters", "raised RuntimeError")
    assert "activation.view(7, -1)" in message


def test_the_fast_code_is_shown_only_once_the_learners_function_passed(capsys):
    task = LESSONS["04"].TASK
    check_task(task, lambda *arguments: 0)
    capsys.readouterr()
    reveal(task)
    assert "def thinet_selection" not in capsys.readouterr().out
    check_task(task, task.reference)
    capsys.readouterr()
    reveal(task)
    assert "def thinet_selection" in capsys.readouterr().out


# --- 00 -----------------------------------------------------------------------------------

def by_slicing(conv, norm, next_conv, j, slice_norm=True, keep_statistics=True, columns=True):
    """A learner's remove_filter, editing copies; the flags plant the usual mistakes."""
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


def test_remove_filter_by_slicing_passes_and_its_mistakes_are_named(capsys):
    passes(capsys, "00", by_slicing)
    fails_saying(capsys, "00", lambda *a: by_slicing(*a, slice_norm=False), "the batch norm's", "shape (4,)")
    fails_saying(capsys, "00", lambda *a: by_slicing(*a, keep_statistics=False), "the batch norm's running_mean")
    fails_saying(capsys, "00", lambda *a: by_slicing(*a, columns=False), "the next conv's weight: shape")


# --- 01 -----------------------------------------------------------------------------------

def test_merge_cost_mistakes_are_named(capsys):
    def counted(a, b):  # the same rule, in plain Python
        ones_a, ones_b = sum(map(bool, a)), sum(map(bool, b))
        union = sum(x or y for x, y in zip(a.tolist(), b.tolist()))
        return union - max(ones_a, ones_b) + abs(ones_a - ones_b)

    passes(capsys, "01", counted)
    fails_saying(capsys, "01", lambda a, b: int((a | b).sum()) - max(int(a.sum()), int(b.sum())),
                 "the penalty: not the value")  # the distance penalty forgotten
    fails_saying(capsys, "01", lambda a, b: int((a | b).sum()) + abs(int(a.sum()) - int(b.sum())),
                 "the penalty: not the value")  # the union not reduced by the larger class


# --- 02 -----------------------------------------------------------------------------------

def test_kmeans_step_mistakes_are_named(capsys):
    def with_a_loop(values, centroids):
        new = centroids.clone()
        nearest = (values[:, None] - centroids).abs().argmin(1)
        for k in range(len(centroids)):
            if (nearest == k).any():
                new[k] = values[nearest == k].mean()
        return new

    passes(capsys, "02", with_a_loop)

    def empty_is_nan(values, centroids):
        nearest = (values[:, None] - centroids).abs().argmin(1)
        return torch.stack([values[nearest == k].mean() for k in range(len(centroids))])

    fails_saying(capsys, "02", empty_is_nan, "an empty cluster", "NaN")

    def median(values, centroids):
        nearest = (values[:, None] - centroids).abs().argmin(1)
        return torch.stack([values[nearest == k].median() if (nearest == k).any() else centroids[k]
                            for k in range(len(centroids))])

    fails_saying(capsys, "02", median, "entries off")


# --- 03 -----------------------------------------------------------------------------------

def with_kl_div(logits, logits_without):  # torch's own, target first
    return torch.nn.functional.kl_div(torch.log_softmax(logits_without, 1), torch.log_softmax(logits, 1),
                                      reduction="batchmean", log_target=True).item()


def test_kl_score_mistakes_are_named(capsys):
    passes(capsys, "03", with_kl_div)
    fails_saying(capsys, "03", lambda logits, without: with_kl_div(without, logits), "8 images", "the score")
    fails_saying(capsys, "03", lambda logits, without: with_kl_div(logits, without) * len(logits), "8 images")

    def naive(logits, logits_without):  # softmax, then log: 0 x log 0 where the network is sure
        p, q = torch.softmax(logits, 1), torch.softmax(logits_without, 1)
        return (p * (p / q).log()).sum(1).mean().item()

    fails_saying(capsys, "03", naive, "sure of its class", "nan")


def test_no_message_prints_the_courses_value(capsys):
    message = fails_saying(capsys, "03", lambda logits, without: 0.123456789, "the score")
    right = LESSONS["03"].kl_score(*LESSONS["03"]._cases()[0].arguments)
    assert f"{right:.3g}" not in message and f"{right:.2f}" not in message


# --- 04 -----------------------------------------------------------------------------------

def test_thinet_step_mistakes_are_named(capsys):
    fit_error = LESSONS["04"]._fit_error

    def by_trying_each(terms, target, kept):  # refit with every candidate, keep the best
        errors = {c: fit_error(terms.double(), target.double(), [*kept, c])
                  for c in range(terms.shape[1]) if c not in kept}
        return min(errors, key=errors.get)

    passes(capsys, "04", by_trying_each)

    def worst(terms, target, kept):  # the largest error instead of the smallest
        errors = {c: fit_error(terms.double(), target.double(), [*kept, c])
                  for c in range(terms.shape[1]) if c not in kept}
        return max(errors, key=errors.get)

    fails_saying(capsys, "04", worst, "none kept yet", "times the error")

    def unscaled(terms, target, kept):  # (x . r)^2 without dividing by the channel's size
        residual = target - terms[:, kept].sum(1) if kept else target
        gain = (terms.T @ residual) ** 2
        gain[kept] = -1
        return int(gain.argmax())

    fails_saying(capsys, "04", unscaled, "times the error")


# --- 05 -----------------------------------------------------------------------------------

def test_taylor_score_mistakes_are_named(capsys):
    def loop(activation, gradient):
        return torch.stack([torch.stack([(a[k] * g[k]).mean().abs() for a, g in zip(activation, gradient)]).mean()
                            for k in range(activation.shape[1])])

    passes(capsys, "05", loop)
    fails_saying(capsys, "05", lambda a, g: (a * g).mean((2, 3)).mean(0).abs(), "4 images")  # images cancel
    fails_saying(capsys, "05", lambda a, g: (a * g).abs().mean((2, 3, 0)), "4 images")  # every position's abs
    fails_saying(capsys, "05", lambda a, g: (a * g).sum((2, 3)).abs().mean(0),
                 "the scores: every entry 25 times")  # summed over the map, not averaged


# --- 06 -----------------------------------------------------------------------------------

def test_a_criterion_of_ones_own_must_rank_the_planted_filter_first_to_go(capsys):
    from course_utils.scores import l1_norm, random_scores

    passes(capsys, "06", lambda model, seed: l1_norm(model))
    fails_saying(capsys, "06", lambda model, seed: {n: -s for n, s in l1_norm(model).items()},
                 "the planted useless filter of conv '0' is number 8 of 8 to go")  # higher removed first
    fails_saying(capsys, "06", lambda model, seed: random_scores(model, seed=seed), "the planted useless filter")
    fails_saying(capsys, "06", lambda model, seed: {n: s.sum() for n, s in l1_norm(model).items()},
                 "scores of conv '0': shape () where it should be (8,)")  # one score per layer
    fails_saying(capsys, "06", lambda model, seed: dict(list(l1_norm(model).items())[:1]),
                 "no scores for the convs ['3']")


# --- 07 -----------------------------------------------------------------------------------

def test_kept_filters_mistakes_are_named(capsys):
    def by_rounding_up(channels, share, unit):
        kept = max(1, channels - int(share * channels))
        return min(channels, math.ceil(kept / unit) * unit)

    passes(capsys, "07", by_rounding_up)
    fails_saying(capsys, "07", lambda c, s, u: math.ceil(c * (1 - s) / u) * u,
                 "a multiple larger than the layer")  # more filters than the layer has
    fails_saying(capsys, "07", lambda c, s, u: max(1, c - int(s * c)), "multiples of 8")  # the rounding forgotten
    fails_saying(capsys, "07", lambda c, s, u: math.ceil((c - int(s * c)) / u) * u,
                 "larger than the layer")  # rounded past the layer's own filters
    fails_saying(capsys, "07", lambda c, s, u: str(by_rounding_up(c, s, u)), "a whole number")  # "72", not 72


def test_head_scores_from_gates_mistakes_are_named(capsys):
    def as_a_learner_writes_it(gradients):
        importance = gradients.abs().sum(dim=0) / len(gradients)
        return importance / torch.sqrt((importance ** 2).sum())

    passes(capsys, "08", as_a_learner_writes_it)
    fails_saying(capsys, "08", lambda g: g.mean(0) / g.mean(0).norm(), "both signs")  # the absolute value forgotten
    fails_saying(capsys, "08", lambda g: g.abs().mean(0), "3 images")  # not normalised per layer
    fails_saying(capsys, "08", lambda g: g.abs().mean(0) / g.abs().mean(0).sum(), "3 images")  # l1, not l2
    fails_saying(capsys, "08", lambda g: g.abs().mean(1) / g.abs().mean(1).norm(), "shape")  # averaged over heads


# --- 09 -----------------------------------------------------------------------------------

def by_sorting(weight, input_norms, sparsity):
    """A learner's Wanda mask: each row's scores sorted, the lowest int(sparsity x inputs) dropped."""
    scores = weight.abs() * input_norms
    order = scores.argsort(dim=1)
    mask = torch.ones_like(weight)
    for row in range(weight.shape[0]):
        mask[row, order[row, :int(sparsity * weight.shape[1])]] = 0
    return mask


def test_wanda_mask_mistakes_are_named(capsys):
    passes(capsys, "09", by_sorting)  # a 0/1 float mask is a mask too

    def per_layer(weight, input_norms, sparsity):
        scores = weight.abs() * input_norms
        count = int(sparsity * scores.numel())
        return scores > scores.flatten().sort().values[count - 1] if count else torch.ones_like(weight, dtype=torch.bool)

    fails_saying(capsys, "09", per_layer, "each row loses int(sparsity x inputs)")
    fails_saying(capsys, "09", lambda w, n, s: by_sorting(w, n ** 2, s),  # the norm squared
                 "rows keep other weights")
    fails_saying(capsys, "09", lambda w, n, s: by_sorting(w, torch.ones_like(n), s), "an outlier input feature")
    fails_saying(capsys, "09", lambda w, n, s: by_sorting(w, n, math.ceil(s * w.shape[1]) / w.shape[1] + 1e-9),
                 "a quarter of 6 inputs", "each row loses int(sparsity x inputs)")
    fails_saying(capsys, "09", lambda w, n, s: 1 - by_sorting(w, n, 1 - s), "rows keep other weights")  # the lowest kept
    fails_saying(capsys, "09", lambda w, n, s: w.abs() * n, "values other than True/False")  # the scores returned
