import pytest
import torch
from scipy.stats import binomtest

from course_utils.uncertainty import (accuracy_interval, family_confidence, paired_difference, tiers,
                                      wilson_interval, with_interval)


def test_wilson_matches_a_textbook_case_and_scipy():
    # Newcombe (1998), Table I: 81 of 263 -> 0.2553 to 0.3662
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    for k, n in [(0, 10), (10, 10), (9_123, 10_000), (37, 64)]:
        reference = binomtest(k, n).proportion_ci(0.95, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((reference.low, reference.high), abs=1e-9)


def test_an_accuracy_interval_shrinks_with_more_images():
    small, large = accuracy_interval(0.8, 1_000), accuracy_interval(0.8, 10_000)
    assert small[0] < large[0] < 0.8 < large[1] < small[1]
    assert with_interval(0.8, 10_000) == "80.00% (79.20-80.77)"


def test_bad_counts_and_confidences_are_refused():
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 10, confidence=1.5)


def test_a_paired_difference_is_surer_than_two_separate_intervals():
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(10_000, generator=generator) < 0.80
    b = a.clone()
    b[:100] = ~b[:100]  # b differs from a on 100 images only
    difference = paired_difference(a, b)
    assert difference.mean == pytest.approx((a.double().mean() - b.double().mean()).item())
    assert difference.high - difference.low < 0.005  # separate Wilson intervals: ~0.016 each
    assert not paired_difference(a, a).clear and paired_difference(a, ~a).clear


def test_tiers_open_only_where_the_leader_is_clearly_better():
    gaps = {("a", "b"): False, ("a", "c"): True, ("c", "d"): False, ("c", "e"): True}
    assert tiers("abcde", lambda x, y: gaps[x, y]) == [1, 1, 2, 2, 3]


def test_repeating_a_run_on_the_same_images_does_not_narrow_the_interval():
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(2_000, generator=generator) < 0.70
    b = torch.rand(2_000, generator=generator) < 0.68
    once = paired_difference(a, b)
    repeated = paired_difference(a.repeat(9, 1), b.repeat(9, 1))  # 9 runs, the same outcomes
    assert repeated.mean == pytest.approx(once.mean)
    assert repeated.high - repeated.low == pytest.approx(once.high - once.low)
    concatenated = paired_difference(a.repeat(9), b.repeat(9))  # the old pooling: 18,000 "images"
    assert (concatenated.high - concatenated.low) < (once.high - once.low) / 2.9


def test_independent_runs_on_the_same_images_narrow_the_interval_only_by_what_they_vary():
    generator = torch.Generator().manual_seed(1)
    hard = torch.rand(1_000, generator=generator) < 0.3  # images every run gets wrong
    runs_a = (torch.rand(4, 1_000, generator=generator) < 0.9) & ~hard
    runs_b = (torch.rand(4, 1_000, generator=generator) < 0.85) & ~hard
    pooled = paired_difference(runs_a, runs_b)
    single = paired_difference(runs_a[0], runs_b[0])
    assert pooled.high - pooled.low < single.high - single.low  # seed noise averages out...
    assert abs(pooled.mean - (runs_a.double().mean() - runs_b.double().mean()).item()) < 1e-12


def test_family_confidence_widens_each_of_many_intervals():
    assert family_confidence(1) == 0.95 and family_confidence(9) == pytest.approx(1 - 0.05 / 9)
    a = torch.tensor([1, 0] * 500 + [1] * 10).bool()
    b = torch.tensor([1, 0] * 500 + [0] * 10).bool()
    assert paired_difference(a, b).clear and not paired_difference(a, b, family_confidence(10 ** 6)).clear
    with pytest.raises(ValueError):
        family_confidence(0)
