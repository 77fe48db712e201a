"""TaylorNets of Yang, Xie, Yang (arXiv 2211.01779), built from physkernels.nn.CG2d, with no activations at all.

Notation of the paper: Conv(l1, l2, c, s1, s2, p) and CG(l1, l2, c, s1, s2, dilation). Each CG layer is the fused
second-order expansion of Eq. 4 on every 2x2 patch (physkernels.nn.CG2d, order 2). The figures themselves are
missing from the text; the layer orders below are derived from the captions and the feature-map sizes (the
derivation is in docs/models.md):

* MNIST (Fig. 5): [Conv(3,3,64,1,1,1) -> CG] x 4 with CG(2,2,64,2,2), diCG(2,2,64,1,1,7), diCG(2,2,64,1,1,3),
  CG(2,2,64,2,2): 28 -> 14 -> 7 -> 4 -> 2, then Linear(2*2*64 -> 10).
* 7x7 MNIST: [Conv(3,3,64,1,1,1) -> CG] x 3 with diCG(2,2,64,1,1,3), CG(2,2,64,2,2), CG(2,2,64,1,1):
  7 -> 4 -> 2 -> 1, then Linear(64 -> 10): 247,370 parameters (paper: "about 248 thousand"). The paper gives
  neither a figure nor a layer list for this net: the structure is inferred from the caption's parameter count
  (the only combination of the paper's layer kinds within 1% of it); which CG is dilated is our choice.
* CIFAR-10 (Fig. 12): [Conv -> CG] x 5 with Conv1-2 (3,3,64), Conv3-5 (3,3,128), CG1-2 CG(2,2,64,2,2),
  diCG1 (2,2,128,1,1,4), diCG2 (2,2,128,1,1,2), CG3 CG(2,2,128,1,1): 32 -> 16 -> 8 -> 4 -> 2 -> 1, then
  Linear(128 -> 10): 1,212,362 parameters (paper: "only 1.2 million").

``cg_as_conv=True`` builds the paper's ablation: every CG replaced by a convolution of the same shape (kernel,
stride, dilation, channels), which makes the whole network linear.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

import physkernels.nn as pknn

from .accounting import PaperModel


class CGSpec(NamedTuple):
    """One [Conv(3,3,conv_channels,1,1,1) -> CG(2,2,channels,stride,stride,dilation)] stage."""

    conv_channels: int
    stride: int
    dilation: int


TAYLORNET_SPECS = {
    "mnist": ((1, 28, 28), (CGSpec(64, 2, 1), CGSpec(64, 1, 7), CGSpec(64, 1, 3), CGSpec(64, 2, 1))),
    "mnist7x7": ((1, 7, 7), (CGSpec(64, 1, 3), CGSpec(64, 2, 1), CGSpec(64, 1, 1))),
    "cifar10": ((3, 32, 32), (CGSpec(64, 2, 1), CGSpec(64, 2, 1), CGSpec(128, 1, 4), CGSpec(128, 1, 2),
                              CGSpec(128, 1, 1))),
}


class TaylorNet(PaperModel):
    """Stages of (3x3 convolution, padding 1) followed by a 2x2 CG layer, then one linear layer; no activations.

    Input (B, C, H, W) with (C, H, W) = ``input_shape``; output (B, num_classes) logits.
    """

    def __init__(self, variant: str = "mnist", cg_as_conv: bool = False, num_classes: int = 10, order: int = 2):
        super().__init__()
        if variant not in TAYLORNET_SPECS:
            raise ValueError(f"variant must be one of {sorted(TAYLORNET_SPECS)}, got {variant!r}")
        self.input_shape, specs = TAYLORNET_SPECS[variant]
        channels, size = self.input_shape[0], self.input_shape[1]
        layers: list[nn.Module] = []
        for spec in specs:
            layers.append(nn.Conv2d(channels, spec.conv_channels, 3, padding=1))
            channels = spec.conv_channels
            if cg_as_conv:
                layers.append(nn.Conv2d(channels, channels, 2, stride=spec.stride, dilation=spec.dilation))
            else:
                layers.append(pknn.CG2d(channels, channels, 2, stride=spec.stride, dilation=spec.dilation,
                                        order=order))
            size = (size - spec.dilation - 1) // spec.stride + 1
            if size < 1:
                raise ValueError(f"variant {variant!r}: feature map vanished")  # a spec error, not user input
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels * size * size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))
