"""``CG2d``: TaylorNet's coarse-graining layer (Eq. 4), a drop-in for ``nn.Conv2d`` with second-order terms.

Every input channel's kh x kw patch is expanded to order 2 (or 3) and the per-channel polynomials are summed into
each output channel (see :mod:`physkernels.ops.cg2d` for the exact formula and weight layouts)::

    y = bias + sum_c ( W1 . x_patch + sum_{p<=q} W2 x_p x_q [+ sum_{p<=q<=s} W3 x_p x_q x_s] )

``order=1`` is exactly ``nn.Conv2d`` (no weight2). The paper's CG(l1, l2, c, s1, s2, dilation) is
``CG2d(in, c, (l1, l2), stride=(s1, s2), dilation=dilation)``.

Initialisation (the "variance budget" rule). For a layer to be stackable with no activations, as in TaylorNet, the
output variance at unit-variance zero-mean input should be about 1 and the quadratic share of it small, so that
deviations grow slowly through depth (the variance map v -> (1-beta) v + beta v^2 has slope 1 + beta at v = 1, and
the squares x_p^2 add channel means that later products amplify, so beta must stay small). With
fan_in = (C_in/groups)*P and the higher-order share ``quadratic_share`` (beta; default 0.1 for order 2, and 0.025
for order 3, where the cubic terms get another 0.025):

* ``weight`` ~ U(-a, a) with a = sqrt(3 (1 - beta [- beta3]) / fan_in): nn.Conv2d's uniform, fan-in scaled
  initialisation (``kaiming_uniform_``) with the linear-network gain, so its variance contribution is 1 - beta.
* ``weight2`` ~ U(-a2, a2) with Var = beta / (C_in/groups * m2), m2 = sum over pairs of E[(x_p x_q)^2] =
  P(P-1)/2 + 3P (Gaussian moments: 1 for p != q, 3 for p == q), so the pairs contribute beta.
* ``weight3`` likewise with m3 = sum over triples of E[(x_p x_q x_s)^2] (1, 3 or 15 for 3, 2 or 1 distinct
  indices), contributing beta3.
* ``bias``: nn.Conv2d's U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

A stack of 8 such layers keeps the activation variance within [0.1, 10] (tested in tests/test_cg2d.py).
``CG2d.from_conv(conv)`` instead copies a trained or initialised convolution and sets the higher orders to zero.
"""

from __future__ import annotations

import itertools
import math
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from ..ops.cg2d import cg2d, int_pair, num_pairs, num_triples

__all__ = ["CG2d"]


def _pair_moment(patch: int) -> float:
    """sum over pairs p <= q of E[(x_p x_q)^2] for iid standard normal x."""
    return patch * (patch - 1) / 2 + 3 * patch


def _triple_moment(patch: int) -> float:
    """sum over triples p <= q <= s of E[(x_p x_q x_s)^2] for iid standard normal x (E x^2=1, x^4=3, x^6=15)."""
    moments = {3: 1.0, 2: 3.0, 1: 15.0}
    return sum(moments[len(set(t))] for t in itertools.combinations_with_replacement(range(patch), 3))


class CG2d(nn.Module):
    """Coarse-graining convolution of order 1, 2 or 3; arguments as ``nn.Conv2d`` (ints or pairs).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode: as
            ``nn.Conv2d`` (numeric zero padding only).
        order: 1 (plain convolution), 2 (the paper's CG operation) or 3.
        quadratic_share: fraction of the unit output variance the higher-order terms get at initialisation.

    Parameters: ``weight`` (C_out, C_in/groups, kh, kw), ``weight2`` (C_out, C_in/groups, P(P+1)/2) for
    order >= 2, ``weight3`` (C_out, C_in/groups, P(P+1)(P+2)/6) for order 3, ``bias`` (C_out) or None.
    Input (B, C_in, H, W) float32/float64, NCHW or channels_last; output (B, C_out, Ho, Wo) as nn.Conv2d.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", order: int = 2,
                 quadratic_share: Optional[float] = None, device=None, dtype=None):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        if order not in (1, 2, 3):
            raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
        if isinstance(padding, str) or padding_mode != "zeros":
            raise ValueError(f"CG2d supports numeric zero padding only, got padding={padding!r}, "
                             f"padding_mode={padding_mode!r}")
        self.in_channels, self.out_channels, self.groups, self.order = in_channels, out_channels, groups, order
        self.kernel_size = int_pair(kernel_size, "kernel_size")
        self.stride, self.padding = int_pair(stride, "stride"), int_pair(padding, "padding")
        self.dilation = int_pair(dilation, "dilation")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.dilation) < 1 or min(self.padding) < 0:
            raise ValueError(f"kernel_size, stride and dilation must be >= 1 and padding >= 0, got "
                             f"{self.kernel_size}, {self.stride}, {self.dilation}, {self.padding}")
        if quadratic_share is None:
            quadratic_share = {1: 0.0, 2: 0.1, 3: 0.025}[order]
        if not 0.0 <= quadratic_share * (2 if order == 3 else 1) < 1.0:
            raise ValueError(f"quadratic_share must be in [0, 1) (in [0, 0.5) for order 3), got {quadratic_share}")
        self.quadratic_share = float(quadratic_share)
        factory = {"device": device, "dtype": dtype}
        cg, patch = in_channels // groups, self.kernel_size[0] * self.kernel_size[1]
        self.weight = nn.Parameter(torch.empty(out_channels, cg, *self.kernel_size, **factory))
        self.weight2 = nn.Parameter(torch.empty(out_channels, cg, num_pairs(patch), **factory)) if order >= 2 else None
        self.weight3 = (nn.Parameter(torch.empty(out_channels, cg, num_triples(patch), **factory))
                        if order == 3 else None)
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The variance-budget initialisation described in the module docstring."""
        cg, patch = self.in_channels // self.groups, self.kernel_size[0] * self.kernel_size[1]
        fan_in = cg * patch
        beta = self.quadratic_share if self.order >= 2 else 0.0
        beta3 = self.quadratic_share if self.order == 3 else 0.0

        def uniform_(t, variance):
            bound = math.sqrt(3.0 * variance)
            nn.init.uniform_(t, -bound, bound)

        uniform_(self.weight, (1.0 - beta - beta3) / fan_in)
        if self.weight2 is not None:
            uniform_(self.weight2, beta / (cg * _pair_moment(patch)))
        if self.weight3 is not None:
            uniform_(self.weight3, beta3 / (cg * _triple_moment(patch)))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, order: int = 2) -> "CG2d":
        """A CG2d whose linear part and bias are copies of ``conv``'s and whose higher orders are 0.

        Its output equals ``conv``'s until training grows the second-order terms.
        """
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"conv must use numeric zero padding, got padding={conv.padding!r}, "
                             f"padding_mode={conv.padding_mode!r}")
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    conv.groups, conv.bias is not None, order=order, device=conv.weight.device,
                    dtype=conv.weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(conv.weight)
            if layer.bias is not None:
                layer.bias.copy_(conv.bias)
            for extra in (layer.weight2, layer.weight3):
                if extra is not None:
                    extra.zero_()
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, torch.Tensor) and x.dim() in (3, 4) and x.shape[-3] != self.in_channels:
            raise ValueError(f"x has {x.shape[-3]} channels but this CG2d has in_channels={self.in_channels}")
        if self.order == 1:
            if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4):
                raise ValueError(f"x must be (B, C_in, H, W) or unbatched (C_in, H, W), got "
                                 f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
            return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return cg2d(x, self.weight, self.weight2, self.bias, self.stride, self.padding, self.dilation, self.groups,
                    weight3=self.weight3)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"bias={self.bias is not None}, order={self.order}")
