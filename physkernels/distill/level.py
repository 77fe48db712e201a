"""One level of the hierarchy: distil every subset of the level at once, as one batched problem.

The references of a level are one parameter tensor ``Y (G, n, C, H, W)`` (subset, class, image). Every step
embeds all ``G * n`` references with one net of the pool in one batch and sums the per-subset losses. The losses
of different subsets share no parameters and the per-sample ops (instance norm included) do not mix images, and
Adam updates element-wise, so this is mathematically the same as ``G`` independent optimisations with the same
nets and initialisation (``tests/test_distill.py`` checks it), at the cost of one batched problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .embedding import embed_in_chunks, net_pool
from .losses import arcface_loss, check_lambda, eq5_loss, padded_index, subset_stats
from .schedule import Partition

LOSSES = ("eq5", "arcface")
INITS = ("mean", "real")


@dataclass(frozen=True)
class DistillConfig:
    """Hyper-parameters of every level.

    ``steps``: Adam steps per level (an int, or one per level); ``lr``: Adam learning rate on pixels;
    ``num_nets``: random embedding nets drawn per level (see :mod:`.embedding`); ``width``: channels of the
    embedding net (paper: 128); ``lam``: lambda of Eq. 5 (paper: 19); ``loss``: ``"eq5"`` or ``"arcface"``;
    ``init``: references start as the mean of their class in the subset (``"mean"``) or as its first image
    (``"real"``); ``clamp``: keep pixels in [0, 1].
    """

    steps: int | tuple[int, ...] = 100
    lr: float = 0.02
    num_nets: int = 4
    width: int = 128
    lam: float = 19.0
    loss: str = "eq5"
    init: str = "mean"
    clamp: bool = True
    arcface_scale: float = 30.0
    arcface_margin: float = 0.5

    def __post_init__(self):
        steps = self.steps if isinstance(self.steps, tuple) else (self.steps,)
        if not all(isinstance(s, int) and s >= 0 for s in steps):
            raise ValueError(f"steps must be an int >= 0 or a tuple of them, got {self.steps!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    def steps_at(self, level: int, num_levels: int) -> int:
        if isinstance(self.steps, int):
            return self.steps
        if len(self.steps) != num_levels:
            raise ValueError(f"steps has {len(self.steps)} entries but the schedule has {num_levels} levels")
        return self.steps[level]


@dataclass
class LevelOutput:
    """``references (G, n, C, H, W)``; ``loss_history``: summed loss per step (first and last are reported)."""

    references: torch.Tensor
    loss_history: list[float] = field(default_factory=list)


def initial_references(images: torch.Tensor, labels: torch.Tensor, part: Partition, num_classes: int,
                       init: str) -> torch.Tensor:
    """``(G, n, C, H, W)`` starting references: per-(subset, class) mean image, or the first member's image."""
    key = (part.subset.to(labels.device) * num_classes + labels).to(images.device)
    flat = part.groups * num_classes
    if init == "mean":
        sums = images.new_zeros((flat,) + images.shape[1:]).index_add_(0, key, images)
        count = torch.bincount(key, minlength=flat).to(images.dtype)
        out = sums / count.view(-1, *([1] * (images.dim() - 1)))
    else:
        first = torch.full((flat,), images.shape[0], dtype=torch.int64, device=images.device)
        first = first.scatter_reduce(0, key, torch.arange(images.shape[0], device=images.device), "amin")
        out = images[first]
    return out.view(part.groups, num_classes, *images.shape[1:])


def distill_level(images: torch.Tensor, labels: torch.Tensor, part: Partition, num_classes: int,
                  config: DistillConfig, steps: int, seed: int, progress: bool = True,
                  desc: str = "level") -> LevelOutput:
    """Distil each subset of ``part`` into one image per class; all subsets optimised together.

    ``images (N, C, H, W)``, ``labels (N,)`` in ``[0, num_classes)``. The embedding nets and the sequence of nets
    used per step depend only on ``seed`` (not on the subsets), which is what makes a batched level reproducible
    subset by subset.
    """
    if images.ndim != 4 or images.shape[2] != images.shape[3]:
        raise ValueError(f"images must have shape (N, C, H, H), got {tuple(images.shape)}")
    counts = part.counts(labels.cpu(), num_classes)
    if bool((counts == 0).any()):
        g, c = (int(v) for v in torch.nonzero(counts == 0)[0])
        raise ValueError(f"subset {g} has no image of class {c}: every subset needs every class")
    groups = part.groups
    nets = net_pool(config.num_nets, images.shape[1], images.shape[2], config.width, seed, images.device,
                    images.dtype)
    features = [embed_in_chunks(net, images) for net in nets]  # real images: once per net, no gradient
    if config.loss == "eq5":
        check_lambda(counts, config.lam)
        stats = [subset_stats(f, labels, part.subset, groups, num_classes) for f in features]
        features = None
    else:
        index = padded_index(part.subset.cpu(), groups)
    refs = initial_references(images, labels, part, num_classes, config.init).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([refs], lr=config.lr)
    choice = torch.randint(config.num_nets, (steps,), generator=torch.Generator().manual_seed(seed + 1)).tolist()
    history = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    for step in bar:
        net = nets[choice[step]]
        ref_features = net(refs.flatten(0, 1)).view(groups, num_classes, -1)
        if config.loss == "eq5":
            loss = eq5_loss(ref_features, stats[choice[step]], config.lam).sum()
        else:
            loss = arcface_loss(ref_features, features[choice[step]], labels, index, config.arcface_scale,
                                config.arcface_margin).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if config.clamp:
            with torch.no_grad():
                refs.clamp_(0.0, 1.0)
        history.append(float(loss.detach()))
        bar.set_postfix(loss=f"{history[-1]:.4g}")
    return LevelOutput(refs.detach(), history)
