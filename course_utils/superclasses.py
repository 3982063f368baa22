"""Paper 01's merge algorithm (§7.2): group classes into superclasses by their filters.

Each class m has a binary *response vector* over the filter groups of a layer: 1 where
deleting that group hurts class m. Classes are merged greedily, always the pair with the
smallest merge penalty, until K superclasses remain; a superclass keeps the union of its
classes' vectors, the filter groups its pruned sub-network must keep.

    union penalty    = ones(A | B) - max(ones(A), ones(B))   (groups the merge adds)
    distance penalty = |ones(A) - ones(B)|                   (keeps an all-ones vector
                                                              from swallowing every class)
    merge penalty    = union penalty + distance penalty
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Superclass:
    classes: list[int]  # the original classes it holds, in ascending order
    keep: torch.Tensor  # bool, one per filter group: the union of its classes' vectors

    @property
    def ones(self) -> int:
        return int(self.keep.sum())


def merge_penalty(a: torch.Tensor, b: torch.Tensor) -> int:
    """Union penalty plus distance penalty of merging boolean vectors a and b."""
    ones_a, ones_b = int(a.sum()), int(b.sum())
    union = int((a | b).sum()) - max(ones_a, ones_b)
    distance = abs(ones_a - ones_b)
    return union + distance


def merge_classes(responses: torch.Tensor, k: int, penalty=merge_penalty) -> list[Superclass]:
    """Merge the classes (rows of the boolean matrix `responses`, classes x groups) into
    `k` superclasses, as §7.2 describes.

    The vectors are first sorted by their number of ones (ascending; ties keep class
    order), and among equal penalties the pair met first in that order is merged, so
    the result is deterministic. `penalty(a, b)`: the cost of merging two response vectors
    (notebook 01's task, the learner's own), by default `merge_penalty`.
    """
    responses = torch.as_tensor(responses).bool()
    if not 1 <= k <= len(responses):
        raise ValueError(f"k must be between 1 and the number of classes ({len(responses)}), "
                         f"got {k}")
    order = sorted(range(len(responses)), key=lambda m: (int(responses[m].sum()), m))
    groups = [Superclass([m], responses[m].clone()) for m in order]
    while len(groups) > k:
        _, i, j = min((penalty(groups[i].keep, groups[j].keep), i, j)
                      for i in range(len(groups)) for j in range(i + 1, len(groups)))
        merged = Superclass(sorted(groups[i].classes + groups[j].classes),
                            groups[i].keep | groups[j].keep)
        groups = [g for n, g in enumerate(groups) if n not in (i, j)] + [merged]
        groups.sort(key=lambda g: (g.ones, g.classes))
    return sorted(groups, key=lambda g: g.classes)
