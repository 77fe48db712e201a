"""The multi-level distillation of Fig. 7: D0 -> D1 -> ... -> DL, each level distilled from the previous one."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .level import DistillConfig, distill_level
from .schedule import Partition, check_class_sizes, groups_per_level, partition


@dataclass
class Level:
    """Level ``index`` (1..L): ``images (G*n, C, H, W)`` with ``labels (G*n,)`` = ``D_index(n, G)``.

    ``partition`` is the partition of the *previous* level's images into the ``G`` subsets this level was
    distilled from (subset g gave ``images[g*n:(g+1)*n]``). ``loss_first``/``loss_last``: summed Eq. 5 (or
    ArcFace) loss at the first and last step; ``seconds``: wall time of the level.
    """

    index: int
    images: torch.Tensor
    labels: torch.Tensor
    partition: Partition
    loss_first: float
    loss_last: float
    seconds: float

    @property
    def per_class(self) -> int:
        return self.partition.groups


def distill_hierarchy(images: torch.Tensor, labels: torch.Tensor, num_classes: int, mappings,
                      config: DistillConfig = DistillConfig(), seed: int = 0, progress: bool = True) -> list[Level]:
    """Distil ``images (N, C, H, W)`` / ``labels (N,)`` level by level along ``mappings`` (see :mod:`.schedule`).

    Raises ``ValueError`` when a class is empty or the class sizes do not fit the schedule.
    """
    labels = labels.cpu()
    check_class_sizes(labels, num_classes, mappings)
    groups = groups_per_level(mappings)
    generator = torch.Generator().manual_seed(seed)
    levels: list[Level] = []
    x, y = images, labels
    for l, g in enumerate(tqdm(groups, desc="hierarchy", disable=not progress)):
        start = time.perf_counter()
        part = partition(y, num_classes, g, generator)
        out = distill_level(x, y, part, num_classes, config, config.steps_at(l, len(groups)),
                            seed=seed + 1009 * (l + 1), progress=progress, desc=f"D{l}->D{l + 1}")
        x = out.references.flatten(0, 1)
        y = torch.arange(num_classes).repeat(g)
        history = out.loss_history or [float("nan")]
        levels.append(Level(l + 1, x, y, part, history[0], history[-1], time.perf_counter() - start))
    return levels
