"""The hierarchy of Fig. 7: a schedule of k-to-1 mappings and the partition of every level into subsets.

A schedule ``mappings = (k_1, ..., k_L)`` distils ``D0(n, M)`` with ``M = k_1 * ... * k_L`` images per class into
``D1(n, M / k_1)``, ..., ``DL(n, 1)``. Level ``l`` cuts every class into ``G_l = k_{l+1} * ... * k_L`` groups and
forms ``G_l`` subsets ``D_i^{(l-1)}`` of one group per class; each subset gives one distilled image per class.

Real data rarely has exactly ``M`` images per class (sklearn digits: 130..137), so level 1 accepts class sizes
``m_c`` for which the ``G_1`` groups of class ``c`` differ from the nominal size ``k_1`` by at most one image:
``G_1 * (k_1 - 1) <= m_c <= G_1 * (k_1 + 1)``; groups are then as equal as possible (sizes floor/ceil of
``m_c / G_1``). Every image of a level lands in exactly one subset. From level 2 on all sizes are exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: Paper (Fig. 7) for MNIST with 6000 images per class; CIFAR-10 has 5000 per class; sklearn digits has 130..137
#: per class in the 75 % training split: 8 * 2 * 2 * 2 * 2 = 128, i.e. D0(10, ~135) -> D1(10, 16) -> D2(10, 8)
#: -> D3(10, 4) -> D4(10, 2) -> D5(10, 1) with level-1 subsets of 8 or 9 images per class.
SCHEDULES: dict[str, tuple[int, ...]] = {
    "mnist": (10, 6, 5, 5, 4),
    "cifar10": (10, 5, 5, 5, 4),
    "digits": (8, 2, 2, 2, 2),
}


def check_mappings(mappings) -> tuple[int, ...]:
    """Validate a schedule: a non-empty sequence of integers >= 2."""
    mappings = tuple(mappings)
    if not mappings or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 2 for k in mappings):
        raise ValueError(f"mappings must be a non-empty sequence of integers >= 2 (k-to-1 per level), got {mappings}")
    return mappings


def groups_per_level(mappings) -> tuple[int, ...]:
    """``G_l`` for every level: the number of subsets, equal to the per-class size of ``D_l``."""
    mappings = check_mappings(mappings)
    return tuple(math.prod(mappings[l + 1:]) for l in range(len(mappings)))


def check_class_sizes(labels: torch.Tensor, num_classes: int, mappings) -> torch.Tensor:
    """Raise ``ValueError`` unless every class is non-empty and fits level 1 of ``mappings``; return class sizes."""
    mappings = check_mappings(mappings)
    if labels.ndim != 1 or labels.dtype != torch.int64:
        raise ValueError(f"labels must be a 1-D int64 tensor, got shape {tuple(labels.shape)} dtype {labels.dtype}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{int(labels.min())}, {int(labels.max())}]")
    sizes = torch.bincount(labels, minlength=num_classes)
    empty = torch.nonzero(sizes == 0).flatten().tolist()
    if empty:
        raise ValueError(f"classes {empty} are empty: every class needs images to be distilled")
    groups, k1 = groups_per_level(mappings)[0], mappings[0]
    low, high = groups * (k1 - 1), groups * (k1 + 1)
    bad = {c: int(m) for c, m in enumerate(sizes.tolist()) if not low <= m <= high}
    if bad:
        raise ValueError(
            f"schedule {mappings} expects {math.prod(mappings)} images per class (level 1: {groups} groups of "
            f"{k1} +- 1, i.e. {low}..{high} per class); class sizes {bad} do not fit. Choose another schedule "
            f"or cap the images per class")
    return sizes


@dataclass(frozen=True)
class Partition:
    """Subsets of one level: image ``i`` belongs to subset ``subset[i]`` (``0 <= subset < groups``)."""

    subset: torch.Tensor  # (N,) int64
    groups: int

    def counts(self, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
        """``(groups, num_classes)`` number of images of each class in each subset."""
        key = self.subset * num_classes + labels
        return torch.bincount(key, minlength=self.groups * num_classes).view(self.groups, num_classes)


def partition(labels: torch.Tensor, num_classes: int, groups: int, generator: torch.Generator) -> Partition:
    """Shuffle every class and cut it into ``groups`` contiguous, as-equal-as-possible groups; group g -> subset g.

    Every image is assigned exactly once; a class with fewer than ``groups`` images raises ``ValueError``.
    """
    subset = torch.empty_like(labels)
    for c in range(num_classes):  # a loop over classes (10), not over subsets
        members = torch.nonzero(labels == c).flatten()
        if members.numel() < groups:
            raise ValueError(f"class {c} has {members.numel()} images, fewer than the {groups} subsets of this level")
        members = members[torch.randperm(members.numel(), generator=generator)]
        # position j of n members goes to group floor(j * groups / n): sizes floor/ceil of n / groups
        subset[members] = torch.arange(members.numel()) * groups // members.numel()
    return Partition(subset=subset, groups=groups)
