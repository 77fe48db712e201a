"""MPO cores <-> dense weight: validation, reconstruction (Eq. 5), TT-SVD, parameter counts (Eq. 6, 9).

Core layout: ``cores[k]`` has shape ``(D_{k-1}, I_k, J_k, D_k)`` with ``D_0 = D_n = 1``. The represented weight has
``nn.Linear.weight``'s shape ``(prod J, prod I)`` and ``W[j_1..j_n, i_1..i_n] = cores[0][:, i_1, j_1, :] @ ... @
cores[n-1][:, i_n, j_n, :]`` (Eq. 5), with row-major multi-indices (``i_1`` most significant).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch

from .contract import dense_weight
from .cores import mpo_shapes
from .factorization import check_shapes, useful_ranks


def validate_cores(cores, name: str = "cores") -> list[torch.Tensor]:
    """Check that ``cores`` form an MPO: >= 2 four-dimensional floating tensors with matching bonds,
    ``D_0 = D_n = 1``, one dtype and one device. Returns them as a list; raises TypeError/ValueError."""
    if isinstance(cores, torch.nn.ParameterList):
        cores = list(cores)
    mpo_shapes(cores)
    if len(cores) < 2:
        raise ValueError(f"{name} must hold at least 2 cores, got {len(cores)}")
    for k, c in enumerate(cores):
        if not c.is_floating_point():
            raise TypeError(f"{name}[{k}] must be a floating-point tensor, got dtype {c.dtype}")
        if c.dtype != cores[0].dtype or c.device != cores[0].device:
            raise TypeError(f"{name}[{k}] has dtype {c.dtype} on {c.device}, but {name}[0] has dtype "
                            f"{cores[0].dtype} on {cores[0].device}: all cores must share dtype and device")
    return list(cores)


def to_dense(cores: Sequence[torch.Tensor]) -> torch.Tensor:
    """The weight ``W`` of shape ``(prod J, prod I)`` that the cores represent (Eq. 5); differentiable.

    Contracts left to right (:func:`physkernels.mpo.contract.dense_weight`: one GEMM per core and one permute),
    costing about ``sum_k prod_{l<=k}(I_l J_l) D_{k-1} D_k`` multiply-adds.
    """
    return dense_weight(validate_cores(cores))


def interleaved(weight: torch.Tensor, in_shape: Sequence[int], out_shape: Sequence[int]) -> torch.Tensor:
    """View ``W (prod J, prod I)`` as the tensor ``T[i_1, j_1, i_2, j_2, ..., i_n, j_n]`` (Eq. 3, reordered)."""
    n = len(in_shape)
    tensor = weight.reshape(*out_shape, *in_shape)               # (j_1..j_n, i_1..i_n)
    order = [axis for k in range(n) for axis in (n + k, k)]
    return tensor.permute(order)


def bipartition_matrix(weight: torch.Tensor, in_shape: Sequence[int], out_shape: Sequence[int],
                       bond: int) -> torch.Tensor:
    """W unfolded at bond ``bond`` (1..n-1): rows ``(i_1 j_1 .. i_b j_b)``, columns ``(i_{b+1} j_{b+1} ..)``.

    Its singular values are the MPO's bond spectrum at that bond (the "entanglement" cut of Sec. IV).
    """
    sizes = [i * j for i, j in zip(in_shape, out_shape)]
    return interleaved(weight, in_shape, out_shape).reshape(math.prod(sizes[:bond]), -1)


def _thin_svd(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD; a very wide (tall) matrix is first reduced by a QR of its transpose (of itself), which is
    backward stable and several times faster than LAPACK's SVD on TT-SVD's first, extremely wide unfoldings."""
    rows, cols = matrix.shape
    if cols >= 2 * rows:
        q, r = torch.linalg.qr(matrix.transpose(0, 1))          # matrix = r^T q^T
        u, s, vh = torch.linalg.svd(r.transpose(0, 1))
        return u, s, vh @ q.transpose(0, 1)
    if rows >= 2 * cols:
        q, r = torch.linalg.qr(matrix)                          # matrix = q r
        u, s, vh = torch.linalg.svd(r)
        return q @ u, s, vh
    return torch.linalg.svd(matrix, full_matrices=False)


class TTSVDResult(NamedTuple):
    """Cores from :func:`tt_svd` and the relative Frobenius error ``||W - to_dense(cores)|| / ||W||``."""

    cores: list[torch.Tensor]
    error: float


def tt_svd(weight: torch.Tensor, in_shape: Sequence[int], out_shape: Sequence[int],
           max_bond=None) -> TTSVDResult:
    """Decompose ``weight (prod J, prod I)`` into MPO cores by sequential truncated SVDs (TT-SVD).

    At bond b the matrix ``(D_{b-1} I_b J_b, rest)`` is split by an SVD and truncated to the rank
    ``useful_ranks(in_shape, out_shape, max_bond)[b-1]``; the left factor becomes core b (left-orthonormal) and
    ``diag(s) V^T`` is carried on. ``max_bond=None`` keeps every rank, which reconstructs W exactly; otherwise the
    error is at most ``sqrt(sum of discarded s^2)`` over all bonds (quasi-optimal within sqrt(n-1) of the best
    MPO of those ranks). Works in float64 and returns cores in ``weight``'s dtype and device, with the relative
    Frobenius error of those returned cores.
    """
    if not isinstance(weight, torch.Tensor) or not weight.is_floating_point() or weight.dim() != 2:
        raise TypeError(f"weight must be a 2-D floating-point tensor, got "
                        f"{type(weight).__name__}{'' if not isinstance(weight, torch.Tensor) else tuple(weight.shape)}")
    in_shape, out_shape = check_shapes(in_shape, out_shape, weight.shape[1], weight.shape[0])
    ranks = useful_ranks(in_shape, out_shape, max_bond)
    w64 = weight.detach().to(torch.float64)
    carry = interleaved(w64, in_shape, out_shape).reshape(1, -1)  # (D_0, rest)
    cores64 = []
    for k, rank in enumerate(ranks):
        rows = carry.shape[0] * in_shape[k] * out_shape[k]
        u, s, vh = _thin_svd(carry.reshape(rows, -1))
        u, s, vh = u[:, :rank], s[:rank], vh[:rank]
        cores64.append(u.reshape(carry.shape[0], in_shape[k], out_shape[k], u.shape[1]))
        carry = s[:, None] * vh
    cores64.append(carry.reshape(carry.shape[0], in_shape[-1], out_shape[-1], 1))
    cores = [c.to(weight.dtype).to(weight.device) for c in cores64]
    residual = torch.linalg.norm(w64 - to_dense([c.to(torch.float64) for c in cores]))
    norm = torch.linalg.norm(w64)
    return TTSVDResult(cores, float(residual / norm) if norm > 0 else float(residual))


def num_parameters(in_shape: Sequence[int], out_shape: Sequence[int], bond_dim) -> int:
    """Parameters of the MPO ``M_{I}^{J}(D)``: ``sum_k D_{k-1} I_k J_k D_k`` with the clipped ranks.

    With the same D at every bond and no clipping this is the paper's Eq. 6,
    ``N_mpo = sum_{k=2}^{n-1} I_k J_k D^2 + I_1 J_1 D + I_n J_n D``. The bias is not counted.
    """
    in_shape, out_shape = check_shapes(in_shape, out_shape)
    full = (1,) + useful_ranks(in_shape, out_shape, bond_dim) + (1,)
    return sum(full[k] * i * j * full[k + 1] for k, (i, j) in enumerate(zip(in_shape, out_shape)))


def compression_ratio(pairs) -> float:
    """The paper's Eq. 9, ``rho = sum_l N_mpo^(l) / sum_l N_ori^(l)``, from ``(N_mpo, N_ori)`` pairs or layers.

    Accepts an iterable whose items are ``(n_mpo, n_ori)`` tuples or MPO layers (anything with
    ``num_parameters`` and ``dense_num_parameters``).
    """
    n_mpo = n_ori = 0
    for item in pairs:
        if hasattr(item, "num_parameters") and hasattr(item, "dense_num_parameters"):
            item = (item.num_parameters, item.dense_num_parameters)
        a, b = item
        n_mpo, n_ori = n_mpo + a, n_ori + b
    if n_ori == 0:
        raise ValueError("compression_ratio needs at least one layer with parameters")
    return n_mpo / n_ori
