"""Compact ResNet-18 / ResNet-50 (He et al.) in plain ``torch.nn``, adapted to small images.

Small-image stem as in the CIFAR variants: one 3x3 stride-1 convolution and no max-pool, then four stages of
``BasicBlock`` (18: 2-2-2-2) or ``Bottleneck`` (50: 3-4-6-3) blocks with strides 1, 2, 2, 2, global average
pooling and a linear head. ``stem_stride = 2`` halves the input first (for images upsampled from a lower
resolution, e.g. 8x8 digits fed at 28x28, it loses nothing and saves 4x compute). ``width`` is the channel
count of the first stage (64 in the original); a smaller width keeps CPU training fast.
:meth:`ResNet.embed` returns the pooled features used for reference matching.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(cin, planes, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    """``(N, C, H, W) -> (N, num_classes)`` logits; ``embed`` gives the ``(N, 8 * width * expansion)`` features."""

    def __init__(self, block, layers: tuple[int, ...], in_channels: int, num_classes: int, width: int = 64,
                 stem_stride: int = 1):
        super().__init__()
        if width < 1 or in_channels < 1 or num_classes < 2:
            raise ValueError(f"need width >= 1, in_channels >= 1, num_classes >= 2; got {width}, {in_channels}, "
                             f"{num_classes}")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, stem_stride, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        stages, cin = [], width
        for i, blocks in enumerate(layers):
            planes = width * 2 ** i
            for j in range(blocks):
                stages.append(block(cin, planes, 2 if (j == 0 and i > 0) else 1))
                cin = planes * block.expansion
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(cin, num_classes)
        self.feature_dim = cin

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(self.stages(self.stem(x)), 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def resnet18(in_channels: int, num_classes: int, width: int = 64, stem_stride: int = 1) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), in_channels, num_classes, width, stem_stride)


def resnet50(in_channels: int, num_classes: int, width: int = 64, stem_stride: int = 1) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), in_channels, num_classes, width, stem_stride)
