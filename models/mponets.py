"""MPO-Nets of Gao et al. (Phys. Rev. Research 2, 023300) and their dense twins.

``M^{J1..Jn}_{I1..In}(D)`` in the paper is ``MPOLinear(in_shape=(I1..In), out_shape=(J1..Jn), bond_dim=D)`` here
(upper indices = output, lower = input). Every constructor takes ``mpo`` (False builds the dense twin: the same
network with nn.Linear / nn.Conv2d in place of each MPO) and ``bond_dim`` (None = the paper's D for every MPO;
an int overrides the D of the layers the paper varies: FC2's first layer, every MPO of the other nets).
Structures and what is derived rather than stated are listed in docs/models.md.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

import physkernels.nn as pknn

from .accounting import PaperModel, dense_weight_count
from .layers import MPOFeatureMap


def _linear(model: PaperModel, mpo: bool, in_shape: Sequence[int], out_shape: Sequence[int], bond_dim: int,
            bias: bool = True) -> nn.Module:
    """A fully connected layer: MPO ``M^{out}_{in}(bond_dim)`` or its dense twin nn.Linear."""
    n_in, n_out = int(torch.tensor(in_shape).prod()), int(torch.tensor(out_shape).prod())
    if not mpo:
        return nn.Linear(n_in, n_out, bias=bias)
    layer = pknn.MPOLinear(tuple(in_shape), tuple(out_shape), bond_dim, bias=bias)
    return model.mark_mpo(layer, n_in * n_out)


class FC2(PaperModel):
    """FC2: 784 -> 256 -> 10 with ReLU; MPO-Net: M^{4,4,4,4}_{4,7,7,4}(D) and M^{1,1,10,1}_{4,4,4,4}(4)."""

    input_shape = (1, 28, 28)

    def __init__(self, mpo: bool = False, bond_dim: int | None = None):
        super().__init__()
        self.fc1 = _linear(self, mpo, (4, 7, 7, 4), (4, 4, 4, 4), bond_dim or 16)
        self.fc2 = _linear(self, mpo, (4, 4, 4, 4), (1, 1, 10, 1), 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


class LeNet5(PaperModel):
    """LeNet-5 on 28x28: conv 5x5 (6, pad 2) - pool - conv 5x5 (16) - pool - conv 5x5 (120) - FC 84 - FC 10.

    MPO-Net: the 16*5*5 -> 120 convolution (a full linear map of the 16x5x5 input) is
    M^{2,5,6,2}_{2,10,10,2}(4) (a physkernels MPOConv2d), the FC layers M^{2,3,7,2}_{2,5,6,2}(4) and
    M^{1,5,2,1}_{2,3,7,2}(2).
    """

    input_shape = (1, 28, 28)

    def __init__(self, mpo: bool = False, bond_dim: int | None = None):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
        if mpo:
            self.conv3 = pknn.MPOConv2d(16, 120, 5, in_shape=(2, 10, 10, 2), out_shape=(2, 5, 6, 2),
                                        bond_dim=bond_dim or 4)
            self.mark_mpo(self.conv3, 120 * 16 * 25)
        else:
            self.conv3 = nn.Conv2d(16, 120, 5)
        self.fc1 = _linear(self, mpo, (2, 5, 6, 2), (2, 3, 7, 2), bond_dim or 4)
        self.fc2 = _linear(self, mpo, (2, 3, 7, 2), (1, 5, 2, 1), bond_dim or 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv3(self.features(x))).flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))


_VGG_CONFIGS = {
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


class VGG(PaperModel):
    """VGG-16 / VGG-19 for 32x32 CIFAR-10: 3x3 conv-BN-ReLU stacks, 5 max-pools, FC 512-4096-4096-10 (ReLU,
    dropout 0.2 as in the paper's code).

    MPO-Net: the last two convolutions (512 -> 512 on the 2x2 map of block 5) are MPOs
    M^{2,8,8,8,2}_{2,8,8,8,2}(4) over the whole 2x2x512 map (:class:`MPOFeatureMap`), and the FC layers
    M^{4,4,8,8,4}_{4,4,4,4,2}(4), M^{4,4,8,8,4}_{4,4,8,8,4}(4), M^{1,10,1,1,1}_{4,4,8,8,4}(4).
    """

    input_shape = (3, 32, 32)

    def __init__(self, depth: int = 16, mpo: bool = False, bond_dim: int | None = None, dropout: float = 0.2):
        super().__init__()
        if depth not in _VGG_CONFIGS:
            raise ValueError(f"depth must be one of {sorted(_VGG_CONFIGS)}, got {depth!r}")
        d = bond_dim or 4
        cfg = _VGG_CONFIGS[depth]
        convs_left = sum(1 for v in cfg if v != "M")
        layers: list[nn.Module] = []
        channels, size = 3, 32
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                size //= 2
                continue
            convs_left -= 1
            if mpo and convs_left < 2:  # the last two convolutions
                linear = MPOFeatureMap(512, size, size, (2, 8, 8, 8, 2), (2, 8, 8, 8, 2), d)
                self.mark_mpo(linear, dense_weight_count(nn.Conv2d(channels, v, 3, bias=False)))
            else:
                linear = nn.Conv2d(channels, v, 3, padding=1)
            layers += [linear, nn.BatchNorm2d(v), nn.ReLU()]
            channels = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            _linear(self, mpo, (4, 4, 4, 4, 2), (4, 4, 8, 8, 4), d), nn.ReLU(), nn.Dropout(dropout),
            _linear(self, mpo, (4, 4, 8, 8, 4), (4, 4, 8, 8, 4), d), nn.ReLU(), nn.Dropout(dropout),
            _linear(self, mpo, (4, 4, 8, 8, 4), (1, 10, 1, 1, 1), d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class _PreActBlock(nn.Module):
    """Pre-activation ResUnit: BN-ReLU-conv3x3-BN-ReLU-conv3x3 + shortcut (1x1 projection when the shape changes).

    ``linear1``/``linear2`` replace the two convolutions when given (the MPO ResUnit)."""

    def __init__(self, c_in: int, c_out: int, stride: int, linear1: nn.Module | None = None,
                 linear2: nn.Module | None = None):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
        self.conv1 = linear1 or nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.conv2 = linear2 or nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False) if stride != 1 or c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(a)
        return self.conv2(torch.relu(self.bn2(self.conv1(a)))) + shortcut


class ResNet(PaperModel):
    """Width-k pre-activation ResNet for CIFAR-10 (the paper's code): conv 16, three stages of n ResUnits with
    16k, 32k, 64k channels (strides 1, 2, 2), BN-ReLU, global average pool, FC 64k -> 10. depth = 6n + 2.

    MPO-Net: the FC is M^{1,5,2,1}_{4,4,4,k}(3). ``mpo_unit=True`` also makes the last ResUnit's two
    convolutions MPOs over the whole 64k x 8 x 8 map: M^{2,4,4,4k,4,4,2}_{2,4,4,4k,4,4,2}(4), which is the paper's
    M^{2,4,4,4,4,4,2}_{2,4,4,4,4,4,2}(4) at k = 1 (the only k for which 64k*8*8 = 4096; see docs/models.md).
    """

    input_shape = (3, 32, 32)

    def __init__(self, depth: int = 20, k: int = 4, mpo: bool = False, mpo_unit: bool = False,
                 bond_dim: int | None = None):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, ...), got {depth!r}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k!r}")
        if mpo_unit and not mpo:
            raise ValueError("mpo_unit=True needs mpo=True")
        n = (depth - 2) // 6
        if mpo_unit and n < 2:
            raise ValueError(f"mpo_unit=True needs depth >= 14 (the last ResUnit must keep its 8x8 map), got {depth}")
        self.depth, self.k = depth, k
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        blocks, c_in = [], 16
        for stage, (width, stride) in enumerate(((16 * k, 1), (32 * k, 2), (64 * k, 2))):
            for i in range(n):
                last = stage == 2 and i == n - 1
                linears = (None, None)
                if last and mpo_unit:
                    shape = (2, 4, 4, 4 * k, 4, 4, 2)
                    linears = tuple(MPOFeatureMap(width, 8, 8, shape, shape, bond_dim or 4, bias=False)
                                    for _ in range(2))
                    for m in linears:
                        self.mark_mpo(m, width * width * 9)
                blocks.append(_PreActBlock(c_in, width, stride if i == 0 else 1, *linears))
                c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(c_in)
        self.fc = _linear(self, mpo, (4, 4, 4, k), (1, 5, 2, 1), bond_dim or 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.blocks(self.stem(x))))
        return self.fc(x.mean(dim=(2, 3)))


# (n, m, k) -> input factors of the FC MPO M^{1,5,2,1}_{...}(4) of Table II; each multiplies to n + 3km.
DENSENET_FC_SHAPES = {(16, 12, 12): (4, 4, 7, 4), (16, 12, 24): (4, 5, 11, 4), (24, 32, 12): (4, 7, 7, 6),
                      (96, 32, 24): (5, 8, 12, 5)}


class _DenseLayer(nn.Module):
    """BN-ReLU-conv3x3 producing k new maps, concatenated to its input."""

    def __init__(self, c_in: int, growth: int):
        super().__init__()
        self.bn, self.conv = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv(torch.relu(self.bn(x)))], dim=1)


class DenseNet(PaperModel):
    """DenseNet (n, m, k) of the paper: conv 3x3 to n maps, three dense blocks of m layers with growth k,
    transitions BN-ReLU-conv1x1-avgpool2 keeping the channel count, BN-ReLU, global average pool and one FC
    (n + 3km) -> 10. Depth L = 3m + 4. MPO-Net: the FC is M^{1,5,2,1}_{I}(4) with I from Table II.
    """

    input_shape = (3, 32, 32)

    def __init__(self, n: int = 16, m: int = 12, k: int = 12, mpo: bool = False, bond_dim: int | None = None):
        super().__init__()
        if mpo and (n, m, k) not in DENSENET_FC_SHAPES:
            raise ValueError(f"(n, m, k) must be one of Table II's {sorted(DENSENET_FC_SHAPES)} for the MPO-Net, "
                             f"got {(n, m, k)}")
        if min(n, m, k) < 1:
            raise ValueError(f"n, m, k must be >= 1, got {(n, m, k)}")
        layers: list[nn.Module] = [nn.Conv2d(3, n, 3, padding=1, bias=False)]
        c = n
        for block in range(3):
            for _ in range(m):
                layers.append(_DenseLayer(c, k))
                c += k
            if block < 2:
                layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c, 1, bias=False), nn.AvgPool2d(2)]
        layers += [nn.BatchNorm2d(c), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        in_shape = DENSENET_FC_SHAPES.get((n, m, k), (c,))
        self.fc = _linear(self, mpo, in_shape, (1, 5, 2, 1), bond_dim or 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


# The MPO the paper puts on DenseNet (16, 12, 12)'s "last heaviest convolutional layer" (Sec. III.3, with the FC as
# M^{1,5,2,1}_{4,4,7,4}(4); "rho ~ 0.497"): M^{2,4,4,3,4,2}_{4,5,8,11,4,4}(20), a map of 28160 = 440 * 8 * 8
# inputs to 768 = 12 * 8 * 8 outputs, i.e. a whole 8x8 feature map of 440 channels to one of 12 (the growth k).
DENSENET_CONV_MPO = ((4, 5, 8, 11, 4, 4), (2, 4, 4, 3, 4, 2), 20)


def densenet_conv_mpo_accounting() -> dict:
    """Eq. 6 / Eq. 9 counts of the paper's DenseNet conv MPO, built as stated (``MPOLinear`` with the shapes of
    :data:`DENSENET_CONV_MPO`), against each reading of what it replaces.

    Returns the MPO's parameters with the bonds capped at their useful rank (what ``MPOLinear`` stores: a bond
    beyond ``min(prod of the dims on either side)`` adds nothing) and with every inner bond D = 20 (Eq. 6 read
    literally); rho of the layer against a 3x3 convolution 440 -> 12 (the map's channels) and against the whole
    dense map (28160 x 768); Eq. 9 over both replaced layers (this MPO and the FC MPO, against the 3x3 conv and
    the 448 x 10 FC); and the input channels of DenseNet (16, 12, 12)'s last dense layer here (16 + 35 * 12 = 436,
    not 440: the stated MPO does not fit the network as the paper describes it).
    """
    in_shape, out_shape, bond = DENSENET_CONV_MPO
    layer = pknn.MPOLinear(in_shape, out_shape, bond, bias=False)
    capped = sum(c.numel() for c in layer.cores)
    bonds = (1,) + (bond,) * (len(in_shape) - 1) + (1,)
    literal = sum(bonds[k] * i * j * bonds[k + 1] for k, (i, j) in enumerate(zip(in_shape, out_shape)))
    fc_shape, fc_out = DENSENET_FC_SHAPES[(16, 12, 12)], (1, 5, 2, 1)
    fc = pknn.MPOLinear(fc_shape, fc_out, 4, bias=False)
    fc_mpo, fc_dense = sum(c.numel() for c in fc.cores), 448 * 10
    channels_in, channels_out = layer.in_features // 64, layer.out_features // 64
    conv3x3, whole_map = channels_in * channels_out * 9, layer.in_features * layer.out_features
    return {"mpo": "M^{2,4,4,3,4,2}_{4,5,8,11,4,4}(20)", "in_features": layer.in_features,
            "out_features": layer.out_features, "map_channels_in": channels_in, "map_channels_out": channels_out,
            "ranks_capped": [c.shape[3] for c in layer.cores][:-1], "n_mpo_capped": capped,
            "n_mpo_literal_d20": literal, "n_conv3x3": conv3x3, "n_whole_map": whole_map,
            "rho_vs_conv3x3_capped": capped / conv3x3, "rho_vs_conv3x3_literal": literal / conv3x3,
            "rho_vs_whole_map_capped": capped / whole_map,
            "rho_eq9_with_fc_capped": (capped + fc_mpo) / (conv3x3 + fc_dense),
            "rho_eq9_with_fc_literal": (literal + fc_mpo) / (conv3x3 + fc_dense), "paper_rho": 0.497,
            "densenet_16_12_12_last_layer_channels": 16 + 35 * 12}
