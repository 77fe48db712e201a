"""The embedding network of Fig. 8 (the Distribution-Matching ConvNet) and pools of randomly initialised copies.

``f``: three blocks ``Conv -> InstanceNorm -> ReLU -> AvgPool(2x2, stride 2)``. Conv1 is Conv(3,3,W,1,1,p1)
(3x3 kernel, ``W`` output channels, stride 1, padding ``p1``), Conv2 and Conv3 are Conv(3,3,W,1,1,1). For a
28x28 image ``p1 = 3`` (28 + 6 - 2 = 32 -> 16 -> 8 -> 4), so the embedding is ``W x 4 x 4`` (paper: W = 128, a
vector of length 16 with 128 channels), returned flattened as ``(N, W * 16)``.

Why random, untrained nets (Distribution Matching, Zhao & Bilen): the references are asked to match the data
under many random feature maps rather than under one net they could over-fit. A fresh net per optimisation step
would need every real image of a level re-embedded at every step, which dominates the cost on a CPU; instead we
draw a *pool* of ``num_nets`` random nets per level, embed the real images once per net (no gradient), and let
every step pick one net of the pool. ``num_nets = 1`` is the "fixed net" variant, ``num_nets = steps`` with a
fresh pool per level is the "fresh net per step" variant of DM.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def first_padding(height: int) -> int:
    """Padding of Conv1 so that three 2x2 poolings land exactly on 4x4 (3 for 28x28 as in Fig. 8, 1 for 32x32)."""
    gap = (-(height - 2)) % 8
    return gap // 2 if gap % 2 == 0 and gap // 2 <= 3 else 1


class EmbeddingNet(nn.Module):
    """Fig. 8: ``(N, C, H, W) -> (N, width * (H'//8) * (W'//8))`` through 3 x (conv, instance norm, ReLU, avgpool)."""

    def __init__(self, in_channels: int, image_size: int, width: int = 128,
                 generator: torch.Generator | None = None):
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.paddings = (first_padding(image_size), 1, 1)
        self.convs = nn.ModuleList([nn.Conv2d(in_channels, width, 3, padding=self.paddings[0]),
                                    nn.Conv2d(width, width, 3, padding=1), nn.Conv2d(width, width, 3, padding=1)])
        with torch.no_grad():  # PyTorch's default Conv2d init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), but seeded
            for conv in self.convs:
                bound = 1.0 / math.sqrt(conv.weight[0].numel())
                conv.weight.uniform_(-bound, bound, generator=generator)
                conv.bias.uniform_(-bound, bound, generator=generator)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.avg_pool2d(F.relu(F.instance_norm(conv(x))), 2)
        return x.flatten(1)


def net_pool(num_nets: int, in_channels: int, image_size: int, width: int, seed: int,
             device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> list[EmbeddingNet]:
    """``num_nets`` independently initialised :class:`EmbeddingNet` s, reproducible from ``seed``."""
    if num_nets < 1:
        raise ValueError(f"num_nets must be >= 1, got {num_nets}")
    gen = torch.Generator().manual_seed(seed)
    return [EmbeddingNet(in_channels, image_size, width, gen).to(device=device, dtype=dtype) for _ in range(num_nets)]


@torch.no_grad()
def embed_in_chunks(net: nn.Module, images: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """``net(images)`` without gradient, ``chunk`` images at a time."""
    return torch.cat([net(images[i:i + chunk]) for i in range(0, images.shape[0], chunk)])
