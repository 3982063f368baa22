import pytest
import torch

from course_utils.superclasses import merge_classes, merge_penalty


def vectors(*rows):
    return torch.tensor([[int(c) for c in row] for row in rows], dtype=torch.bool)


def test_merge_penalty_is_union_plus_distance():
    a, b = vectors("1100", "0110")
    assert merge_penalty(a, b) == (3 - 2) + 0
    a, b = vectors("1000", "1110")
    assert merge_penalty(a, b) == (3 - 3) + 2


def test_identical_vectors_merge_first():
    supers = merge_classes(vectors("1100", "0011", "1100", "0011"), k=2)
    assert [s.classes for s in supers] == [[0, 2], [1, 3]]
    assert [s.keep.int().tolist() for s in supers] == [[1, 1, 0, 0], [0, 0, 1, 1]]


def test_the_all_ones_vector_does_not_swallow_every_class():
    responses = vectors("111111", "111000", "110000", "000111", "000011")
    # Joining the all-ones class costs no union penalty but a distance penalty of 3 or 4,
    # while 2 joins 1 (and 4 joins 3) at penalty 0 + 1: the all-ones class stays alone.
    supers = merge_classes(responses, k=3)
    assert [s.classes for s in supers] == [[0], [1, 2], [3, 4]]
    assert [s.ones for s in supers] == [6, 3, 3]


def test_superclasses_partition_the_classes_and_keep_their_union():
    torch.manual_seed(0)
    responses = torch.rand(10, 16) < 0.3
    supers = merge_classes(responses, k=3)
    assert sorted(m for s in supers for m in s.classes) == list(range(10))
    for s in supers:
        assert torch.equal(s.keep, responses[s.classes].any(0))


@pytest.mark.parametrize("k", [0, 11])
def test_k_must_be_between_one_and_the_number_of_classes(k):
    with pytest.raises(ValueError, match="between 1 and"):
        merge_classes(torch.zeros(10, 4, dtype=torch.bool), k)
