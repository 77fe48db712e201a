"""Small layers the paper models need on top of physkernels.nn."""

from __future__ import annotations

import math

import torch
from torch import nn

import physkernels.nn as pknn


class MPOFeatureMap(nn.Module):
    """An MPO acting on a whole feature map, as the MPO paper does for its "heaviest convolutional layers".

    x (B, C, H, W) is read in (H, W, C) order (the paper's code is channels-last, so the first MPO index is the
    row, as in ``M^{2,8,8,8,2}_{2,8,8,8,2}`` on VGG's 2x2x512 map), flattened to H*W*C features, mapped by
    ``MPOLinear(in_shape, out_shape, bond_dim)`` and reshaped back to (B, C, H, W). This is a general linear
    map of the map (a 3x3 convolution with padding 1 is one special case of it), so it replaces that
    convolution; Eq. 9 compares its cores with the convolution's C*C*9 weights.
    """

    def __init__(self, channels: int, height: int, width: int, in_shape, out_shape, bond_dim, bias: bool = True):
        super().__init__()
        n = channels * height * width
        if math.prod(in_shape) != n or math.prod(out_shape) != n:
            raise ValueError(f"in_shape {tuple(in_shape)} and out_shape {tuple(out_shape)} must both multiply to "
                             f"channels*height*width = {n}")
        self.map_shape = (channels, height, width)
        self.mpo = pknn.MPOLinear(tuple(in_shape), tuple(out_shape), bond_dim, bias=bias)

    @property
    def cores(self):
        return self.mpo.cores

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = self.map_shape
        if tuple(x.shape[1:]) != self.map_shape:
            raise ValueError(f"x must have shape (B, {c}, {h}, {w}), got {tuple(x.shape)}")
        y = self.mpo(x.permute(0, 2, 3, 1).reshape(x.shape[0], -1))
        return y.reshape(x.shape[0], h, w, c).permute(0, 3, 1, 2)
