"""Parameter counts and the compression ratio rho of the MPO paper (Eq. 6, Eq. 9).

Every model of this package is a :class:`PaperModel`: it remembers which of its layers are MPOs and how many
weights the dense layer they replace has. Then

    rho = sum_l N_mpo^(l) / sum_l N_ori^(l)                                     (Eq. 9)

summed over the replaced layers only, where N_mpo is the number of MPO core entries (Eq. 6; biases are not part
of either count, which is what reproduces the paper's "D = 2 FC2 has only 1024 parameters") and N_ori the
weight count of the dense layer (a Linear's out*in, a Conv2d's out*in*kh*kw).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from physkernels.mpo import compression_ratio


def mpo_core_count(module: nn.Module) -> int:
    """Number of MPO core entries of an MPO layer (Eq. 6): the sum of its ``cores``' sizes, bias excluded."""
    cores = getattr(module, "cores", None)
    if cores is None:
        raise TypeError(f"{type(module).__name__} has no 'cores': not an MPO layer")
    return sum(int(c.numel()) for c in cores)


def dense_weight_count(module: nn.Module) -> int:
    """Weight entries of a dense nn.Linear / nn.Conv2d (bias excluded): N_ori of Eq. 9."""
    if not isinstance(module, (nn.Linear, nn.Conv2d)):
        raise TypeError(f"expected nn.Linear or nn.Conv2d, got {type(module).__name__}")
    return int(module.weight.numel())


@dataclass(frozen=True)
class ModelCompression:
    """What :meth:`PaperModel.compression` returns; ``rho`` is 1.0 for a dense twin (nothing replaced)."""

    parameters: int        # every trainable parameter of the model
    mpo_parameters: int    # sum of N_mpo over the replaced layers
    original_parameters: int  # sum of N_ori over the same layers in the dense twin
    rho: float
    layers: tuple[tuple[str, int, int], ...]  # (module path, N_mpo, N_ori) per replaced layer

    def as_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = [list(x) for x in self.layers]
        return d


class PaperModel(nn.Module):
    """nn.Module that knows its MPO layers and the dense sizes they replace.

    Subclasses call ``self.mark_mpo(module, n_original)`` for each MPO layer they build.
    """

    def __init__(self) -> None:
        super().__init__()
        self._mpo_layers: list[tuple[nn.Module, int]] = []

    def mark_mpo(self, module: nn.Module, n_original: int) -> nn.Module:
        mpo_core_count(module)  # validates that it is an MPO layer
        self._mpo_layers.append((module, int(n_original)))
        return module

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def compression(self) -> ModelCompression:
        names = {id(m): n for n, m in self.named_modules()}
        layers = tuple((names.get(id(m), "?"), mpo_core_count(m), n_ori) for m, n_ori in self._mpo_layers)
        n_mpo = sum(x[1] for x in layers)
        n_ori = sum(x[2] for x in layers)
        rho = compression_ratio([x[1:] for x in layers]) if n_ori else 1.0
        return ModelCompression(self.num_parameters(), n_mpo, n_ori, rho, layers)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of any module."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def l2_penalty(model: nn.Module) -> torch.Tensor:
    """sum_i |w_i|^2 / 2 over every trainable parameter: the regulariser of Eq. 7 without its alpha."""
    return 0.5 * sum(p.pow(2).sum() for p in model.parameters() if p.requires_grad)
