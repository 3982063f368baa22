import pytest
import torch
from scipy.stats import binomtest

from course_utils.uncertainty import (accuracy_interval, paired_difference, tiers,
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
