"""MPO (tensor-train) linear map: ``y = x @ W^T + bias`` with W given by a matrix product operator (Eq. 5).

Core layout: ``cores[k]`` has shape ``(D_{k-1}, I_k, J_k, D_k)`` with ``D_0 = D_n = 1``. The represented weight has
``nn.Linear.weight``'s shape ``(prod J, prod I)``::

    W[j_1..j_n, i_1..i_n] = cores[0][:, i_1, j_1, :] @ cores[1][:, i_2, j_2, :] @ ... @ cores[n-1][:, i_n, j_n, :]

with row-major multi-indices (``i_1`` most significant). ``mpo_linear(x, cores, bias)`` takes x of shape
``(..., prod I)`` and returns ``(..., prod J)``.

Modules: ``reference`` (the dense reconstruction, independent of every fast path; validation), ``plans`` (what the
compiled backends share), ``cpp_backend``, ``triton_backend`` (float32) and ``cuda_backend``: each runs the
contraction plan chosen by :func:`physkernels.mpo.plan` (a fused chain kernel, a chain of batched GEMMs, or W
reconstructed for one GEMM, whichever the cost model predicts fastest). In plain eager training the forward keeps
the chain's states for the backward (the planner's ``training`` objective); the custom op's backward plans and
recomputes on its own. The op is assembled by :class:`physkernels.ops._builder.KernelOp`.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from ...mpo.cores import mpo_shapes, reference_mpo_weight
from .._builder import KernelOp
from .reference import reference_mpo_linear, reference_weight_grad_to_cores, validate

__all__ = ["mpo_linear", "reference_mpo_linear", "reference_mpo_weight", "reference_weight_grad_to_cores",
           "mpo_shapes"]

op = KernelOp(
    "mpo_linear", "(Tensor x, Tensor[] cores, Tensor? bias) -> Tensor",
    title="MPOLinear", reference=reference_mpo_linear,
    fake=lambda x, cores, bias: x.new_empty(x.shape[0], math.prod(c.shape[2] for c in cores)),
    backends={name: f"{__name__}.{name}_backend" for name in ("cpp", "triton", "cuda")},
    auto_order={"cpu": ("cpp", "reference"), "cuda": ("cuda", "triton", "reference")})


def mpo_linear(x: torch.Tensor, cores: Sequence[torch.Tensor], bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``x @ W^T + bias`` where W (prod J, prod I) is the MPO of ``cores`` (Eq. 5); x has shape ``(..., prod I)``.

    Differentiable in x, every core and bias, also twice: with ``create_graph=True`` the backward is the
    reference's VJP in plain torch (the planned kernels serve first-order gradients). Raises ValueError/TypeError
    naming the argument on bad input. Runs the custom op ``torch.ops.physkernels.mpo_linear`` under
    ``torch.compile``, export, fake tensors and dispatch modes; in plain eager mode it calls the same kernels
    through a lighter ``autograd.Function`` (with gradients) or directly (inference; see
    :mod:`physkernels.ops._builder`). Inside ``torch.func`` transforms and for an empty batch it evaluates
    :func:`reference_mpo_linear`.
    """
    x, cores, bias = op.autocast(x, cores, bias)
    _, out_shape, _ = validate(x, cores, bias)
    y = op(x.reshape(-1, x.shape[-1]), list(cores), bias)
    return y.reshape(*x.shape[:-1], math.prod(out_shape))
