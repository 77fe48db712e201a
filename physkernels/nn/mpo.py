"""MPO layers (MPO-Net, Gao et al.): ``MPOLinear`` and ``MPOConv2d``, whose weight matrix is a matrix product operator.

The weight ``W (prod J, prod I)`` is stored as cores ``cores[k]`` of shape ``(D_{k-1}, I_k, J_k, D_k)``,
``D_0 = D_n = 1``, with ``W[j_1..j_n, i_1..i_n] = cores[0][:, i_1, j_1, :] @ ... @ cores[n-1][:, i_n, j_n, :]``
(Eq. 5, row-major multi-indices).

Initialisation (both layers). With independent zero-mean core entries of variance ``sigma_k^2``, every entry of W
is a sum over ``prod_b D_b`` bond paths of products of n independent entries; distinct paths are uncorrelated, so
``Var(W) = prod_b D_b * prod_k sigma_k^2``. Choosing ``sigma_k^2 = v^(1/n) / sqrt(D_{k-1} D_k)`` gives
``prod_k sigma_k^2 = v / prod_b D_b`` (each inner bond appears in two cores) and hence ``Var(W) = v``; we use
``v = 1 / (3 fan_in)``, the variance of nn.Linear's / nn.Conv2d's default ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``
weights, with normal core entries (W's entries then match that variance, not the uniform shape). The bias is drawn
like nn.Linear's.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..mpo.canonical import bond_spectra, entanglement_entropy
from ..mpo.factorization import check_positive_int, check_shape, check_shapes, factorize, useful_ranks
from ..mpo.tensor_train import compression_ratio, to_dense, tt_svd

__all__ = ["MPOLinear", "MPOConv2d"]


def _default_shapes(in_features: int, out_features: int, in_shape, out_shape, num_cores: int):
    """in/out shapes, factorising (:func:`physkernels.mpo.factorize`) whichever is None."""
    if in_shape is None or out_shape is None:
        given = in_shape if in_shape is not None else out_shape
        n = len(given) if given is not None else check_positive_int(num_cores, "num_cores")
        in_shape = factorize(in_features, n) if in_shape is None else in_shape
        out_shape = factorize(out_features, n) if out_shape is None else out_shape
    return check_shapes(in_shape, out_shape, in_features, out_features)


def _shapes_from_features(in_shape, out_shape, num_cores: int):
    """MPOLinear's shapes: a shape given as an int (a feature count) is factorised like the other shape's length,
    or into ``num_cores`` factors when both are ints."""
    def is_count(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    if not (is_count(in_shape) or is_count(out_shape)):
        return in_shape, out_shape
    in_features = check_positive_int(in_shape, "in_features") if is_count(in_shape) else math.prod(
        check_shape(in_shape, "in_shape"))
    out_features = check_positive_int(out_shape, "out_features") if is_count(out_shape) else math.prod(
        check_shape(out_shape, "out_shape"))
    return _default_shapes(in_features, out_features, None if is_count(in_shape) else in_shape,
                           None if is_count(out_shape) else out_shape, num_cores)


def _warn_if_uncompressed(layer: "_MPOWeight", what: str, bond_dim) -> None:
    """from_linear / from_conv on sizes that factorise badly (a prime feature count gives shapes like
    (1, 1, 97, 1)) yield an MPO no smaller than the dense weight; say so instead of pretending to compress
    (``bond_dim=None`` asks for the exact, uncompressed MPO: no warning)."""
    if bond_dim is not None and layer.compression_ratio >= 1.0:
        warnings.warn(f"{what}: the MPO {layer.in_shape} -> {layer.out_shape} with ranks {layer.ranks} has "
                      f"{layer.num_parameters} parameters, {layer.compression_ratio:.3f}x the dense weight's "
                      f"{layer.dense_num_parameters}: no compression. Pass in_shape/out_shape with balanced factors "
                      f"(or pad the layer to a size that factorises) and a smaller bond_dim.", stacklevel=3)


class _MPOWeight(nn.Module):
    """Holds the MPO cores of a weight matrix ``(prod J, prod I)``; the shared part of the MPO layers."""

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int], bond_dim, device=None, dtype=None):
        super().__init__()
        in_shape, out_shape = check_shapes(in_shape, out_shape)
        if bond_dim is None:
            raise TypeError("bond_dim must be an int or a list of n-1 ints, got None")
        ranks = (1,) + useful_ranks(in_shape, out_shape, bond_dim) + (1,)
        factory = {"device": device, "dtype": dtype}
        self.cores = nn.ParameterList(
            nn.Parameter(torch.empty(ranks[k], i, j, ranks[k + 1], **factory))
            for k, (i, j) in enumerate(zip(in_shape, out_shape)))
        self._core_keys = [str(k) for k in range(len(in_shape))]  # the registry's keys while no core is replaced
        self.truncation_error: float | None = None  # relative Frobenius error of from_linear / from_conv

    # --- structure -------------------------------------------------------------------------------------------
    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(c.shape[1] for c in self.cores)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(c.shape[2] for c in self.cores)

    @property
    def ranks(self) -> tuple[int, ...]:
        """Bond dimensions ``(D_1, ..., D_{n-1})`` after clipping to the maximal useful rank."""
        return tuple(c.shape[3] for c in self.cores[:-1])

    @property
    def num_parameters(self) -> int:
        """Parameters of the cores, ``sum_k D_{k-1} I_k J_k D_k`` (Eq. 6 when every bond is D); bias excluded."""
        return sum(c.numel() for c in self.cores)

    @property
    def dense_num_parameters(self) -> int:
        """Parameters of the dense weight this MPO replaces, ``prod I * prod J`` (N_ori of Eq. 9)."""
        return math.prod(self.in_shape) * math.prod(self.out_shape)

    @property
    def compression_ratio(self) -> float:
        """Eq. 9 for this layer: ``N_mpo / N_ori`` (weights only)."""
        return compression_ratio([self])

    def core_list(self) -> list[torch.Tensor]:
        """The cores in order: ``list(self.cores)`` without ParameterList's per-item indexing while every core is
        a plain entry of the registry (``torch.func.functional_call`` swaps tensors in place there). A core that
        is reparametrised (``torch.nn.utils.parametrize``) or pruned (``torch.nn.utils.prune``, whose forward
        pre-hooks on the ParameterList recompute the pruned cores; the list itself is never called, so they run
        here) is read through the indexed path."""
        cores = self.cores
        for hook in cores._forward_pre_hooks.values():
            hook(cores, ())
        params = cores._parameters
        if list(params) == self._core_keys:
            return list(params.values())
        return [cores[k] for k in range(len(cores))]

    # --- weight ----------------------------------------------------------------------------------------------
    def weight_matrix(self) -> torch.Tensor:
        """The dense W ``(prod J, prod I)`` the cores represent (Eq. 5); differentiable."""
        return to_dense(self.core_list())

    def bond_spectra(self) -> list[torch.Tensor]:
        """Singular values of W at each bond (see :func:`physkernels.mpo.bond_spectra`), float64, detached."""
        return bond_spectra([c.detach().to(torch.float64) for c in self.cores])

    def entanglement_entropy(self) -> torch.Tensor:
        """``S_b = -sum p log p``, ``p = s^2 / sum s^2`` over each bond's spectrum; shape (n-1,), float64."""
        return entanglement_entropy(self.bond_spectra())

    def _reset_cores(self, fan_in: int) -> None:
        """Normal core entries with ``sigma_k^2 = (1/(3 fan_in))^(1/n) / sqrt(D_{k-1} D_k)`` (module docstring)."""
        target = 1.0 / (3.0 * fan_in)
        n = len(self.cores)
        with torch.no_grad():
            for core in self.cores:
                std = math.sqrt(target ** (1.0 / n) / math.sqrt(core.shape[0] * core.shape[3]))
                core.normal_(0.0, std)

    def _load_decomposition(self, cores: Sequence[torch.Tensor], error: float, bias: torch.Tensor | None) -> None:
        """Copy TT-SVD cores and the original bias in; record the truncation error."""
        with torch.no_grad():
            for param, core in zip(self.cores, cores):
                param.copy_(core)
            if bias is not None:
                self.bias.copy_(bias)
        self.truncation_error = error

    def _mpo_repr(self) -> str:
        return f"in_shape={self.in_shape}, out_shape={self.out_shape}, ranks={self.ranks}"


def _reset_bias(bias: torch.Tensor | None, fan_in: int) -> None:
    if bias is not None:
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(bias, -bound, bound)


class MPOLinear(_MPOWeight):
    """``y = x W^T + b`` with W ``(prod J, prod I)`` an MPO ``M_{I_1..I_n}^{J_1..J_n}(D)`` (paper Eq. 5, 8).

    Args:
        in_shape: ``(I_1, ..., I_n)``, ``in_features = prod I``; or the int ``in_features``, factorised by
            :func:`physkernels.mpo.factorize` (``MPOLinear(784, 256, bond_dim=8)``: (4, 7, 7, 4) -> (4, 4, 4, 4)).
        out_shape: ``(J_1, ..., J_n)``, ``out_features = prod J``; same length n >= 2; or the int ``out_features``.
        bond_dim: D (int), n-1 ints, or a float in (0, 1] (that fraction of each bond's full rank); each bond is
            clipped to its maximal useful rank (:func:`physkernels.mpo.useful_ranks`), so a large D gives an exact,
            uncompressed MPO.
        bias: learn an additive bias of shape ``(out_features,)``.
        num_cores: n when both shapes are given as ints (keyword-only; default 4, or the length of the shape
            given as a tuple).

    Input ``(..., in_features)`` -> output ``(..., out_features)``, computed by :func:`physkernels.ops.mpo_linear`
    (a contraction order, or one dense GEMM, chosen by the op's cost-model planner).
    """

    def __init__(self, in_shape: Sequence[int] | int, out_shape: Sequence[int] | int, bond_dim, bias: bool = True,
                 device=None, dtype=None, *, num_cores: int = 4):
        in_shape, out_shape = _shapes_from_features(in_shape, out_shape, num_cores)
        super().__init__(in_shape, out_shape, bond_dim, device=device, dtype=dtype)
        self.in_features = math.prod(self.in_shape)
        self.out_features = math.prod(self.out_shape)
        self.bias = nn.Parameter(torch.empty(self.out_features, device=device, dtype=dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Cores so that Var(W) = 1/(3 in_features), as nn.Linear's default; bias as nn.Linear's."""
        self._reset_cores(self.in_features)
        _reset_bias(self.bias, self.in_features)

    def to_dense(self) -> torch.Tensor:
        """The weight as nn.Linear.weight: ``(out_features, in_features)``; differentiable."""
        return self.weight_matrix()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.mpo_linear(x, self.core_list(), self.bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear, in_shape: Sequence[int] | None = None,
                    out_shape: Sequence[int] | None = None, bond_dim=None, *, num_cores: int = 4) -> "MPOLinear":
        """An MPOLinear approximating ``linear`` by TT-SVD (:func:`physkernels.mpo.tt_svd`).

        Shapes left as None are factorised with :func:`physkernels.mpo.factorize` into ``len`` of the other shape
        or ``num_cores`` factors. ``bond_dim=None`` keeps the full ranks and reconstructs the weight exactly.
        The relative Frobenius error ``||W - W_mpo|| / ||W||`` is stored in ``.truncation_error``. The bias is
        copied; dtype and device follow ``linear``.
        """
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        weight = linear.weight
        in_shape, out_shape = _default_shapes(linear.in_features, linear.out_features, in_shape, out_shape,
                                              num_cores)
        cores, error = tt_svd(weight, in_shape, out_shape, bond_dim)
        layer = cls(in_shape, out_shape, [c.shape[3] for c in cores[:-1]], bias=linear.bias is not None,
                    device=weight.device, dtype=weight.dtype)
        layer._load_decomposition(cores, error, linear.bias)
        _warn_if_uncompressed(layer, "MPOLinear.from_linear", bond_dim)
        return layer

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, {self._mpo_repr()}, "
                f"bias={self.bias is not None}")


class MPOConv2d(_MPOWeight):
    """nn.Conv2d whose kernel matrix ``(C_out, C_in/groups * kh * kw)`` is an MPO (the paper's heavy convolutions).

    Args: nn.Conv2d's (``in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
    padding_mode``) plus, keyword-only, ``bond_dim`` (int or n-1 ints, clipped as in MPOLinear), ``in_shape``
    (``prod = C_in/groups * kh * kw``, the kernel matrix's columns in nn.Conv2d.weight's ``(c, u, v)`` row-major
    order), ``out_shape`` (``prod = C_out``) and ``num_cores`` (n for shapes left as None, factorised by
    :func:`physkernels.mpo.factorize`).

    Forward: reconstruct the kernel from the cores (about ``sum_k prod_{l<=k}(I_l J_l) D_{k-1} D_k`` MACs,
    independent of batch and image size) and call ``F.conv2d``. The alternative, applying the MPO chain to
    unfolded patches, would materialise a ``kh*kw``-times larger im2col tensor and trade the tuned convolution for
    a chain whose per-patch cost only beats the dense kernel at very low ranks. One case has no im2col: a kernel
    that covers the whole unpadded input (``H == kh``, ``W == kw``, no padding or dilation, one group; e.g. the
    LeNet-5 layer that maps 16x5x5 to 120) is a linear map of the flattened input, and runs as
    :func:`physkernels.ops.mpo_linear` on it (the planned chain; output ``(B, C_out, 1, 1)``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None, *,
                 bond_dim, in_shape: Sequence[int] | None = None, out_shape: Sequence[int] | None = None,
                 num_cores: int = 4):
        # nn.Conv2d validates the convolution arguments and normalises them; a meta-device instance costs nothing.
        spec = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=False,
                         padding_mode=padding_mode, device="meta")
        fan_in = (in_channels // groups) * spec.kernel_size[0] * spec.kernel_size[1]
        in_shape, out_shape = _default_shapes(fan_in, out_channels, in_shape, out_shape, num_cores)
        super().__init__(in_shape, out_shape, bond_dim, device=device, dtype=dtype)
        for name in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
                     "padding_mode", "_reversed_padding_repeated_twice"):
            setattr(self, name, getattr(spec, name))
        self.bias = nn.Parameter(torch.empty(out_channels, device=device, dtype=dtype)) if bias else None
        self.reset_parameters()

    @property
    def fan_in(self) -> int:
        return math.prod(self.in_shape)

    def reset_parameters(self) -> None:
        """Cores so that Var(kernel) = 1/(3 fan_in), as nn.Conv2d's default; bias as nn.Conv2d's."""
        self._reset_cores(self.fan_in)
        _reset_bias(self.bias, self.fan_in)

    def to_dense(self) -> torch.Tensor:
        """The kernel as nn.Conv2d.weight: ``(C_out, C_in/groups, kh, kw)``; differentiable."""
        return self.weight_matrix().reshape(self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    def _sees_whole_input(self, x: torch.Tensor) -> bool:
        return (x.dim() in (3, 4) and tuple(x.shape[-2:]) == tuple(self.kernel_size) and self.groups == 1
                and tuple(self.padding) == (0, 0) and tuple(self.dilation) == (1, 1)
                and x.shape[-3] == self.in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._sees_whole_input(x):
            y = ops.mpo_linear(x.reshape(*x.shape[:-3], self.fan_in), self.core_list(), self.bias)
            return y.reshape(*y.shape, 1, 1)
        weight = self.to_dense()
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return F.conv2d(x, weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, in_shape: Sequence[int] | None = None,
                  out_shape: Sequence[int] | None = None, bond_dim=None, *, num_cores: int = 4) -> "MPOConv2d":
        """An MPOConv2d approximating ``conv`` by TT-SVD of its kernel matrix; see :meth:`MPOLinear.from_linear`."""
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
        weight = conv.weight
        matrix = weight.reshape(weight.shape[0], -1)
        in_shape, out_shape = _default_shapes(matrix.shape[1], matrix.shape[0], in_shape, out_shape, num_cores)
        cores, error = tt_svd(matrix, in_shape, out_shape, bond_dim)
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode, device=weight.device,
                    dtype=weight.dtype, bond_dim=[c.shape[3] for c in cores[:-1]], in_shape=in_shape,
                    out_shape=out_shape)
        layer._load_decomposition(cores, error, conv.bias)
        _warn_if_uncompressed(layer, "MPOConv2d.from_conv", bond_dim)
        return layer

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"padding_mode={self.padding_mode!r}, {self._mpo_repr()}, bias={self.bias is not None}")
