"""``mpo_linear`` in Triton (float32): the planned contraction, with a fused chain kernel for the forward in which
one program per batch tile runs every step of the left-to-right chain.

The chain is the planner's (``physkernels.mpo.planner.chain_steps``): step s computes, for c < count_s,
``out[c] (m_s x rest_s*TILE) = A_s (m_s x k_s) @ in[c] (k_s x rest_s*TILE)`` with the tile's samples fastest.
A program loads its tile of x transposed into a private scratch slot (two halves, ping-pong), runs the steps
with blocked ``tl.dot`` (the step sizes are read from a small table, so one compiled kernel serves every chain),
and writes its tile of y. The slot is touched by this program alone, so on a GPU it stays in L1/L2; a barrier
separates the steps. Under ``TRITON_INTERPRET=1`` the same kernel runs on CPU tensors (how the tests run it).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..._kernel_args import device_constant
from ...mpo import contract
from .plans import ChainKernels, fused_chain, planned_backward, planned_forward


@triton.jit
def _transpose_in(src, dst, b0, batch, features, TILE: tl.constexpr, BF: tl.constexpr):
    """dst[f * TILE + t] = src[(b0 + t) * features + f] (zero for samples past the batch)."""
    t = tl.arange(0, TILE)
    for f0 in range(0, features, BF):
        f = f0 + tl.arange(0, BF)
        mask = (f[:, None] < features) & (b0 + t[None, :] < batch)
        v = tl.load(src + (b0 + t[None, :]) * features + f[:, None], mask=mask, other=0.0)
        tl.store(dst + f[:, None] * TILE + t[None, :], v, mask=f[:, None] < features)


@triton.jit
def _chain_forward_kernel(x_ptr, y_ptr, mats_ptr, table_ptr, scratch_ptr, batch, in_features, out_features,
                          n_steps, half, TILE: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr,
                          BN: tl.constexpr):
    pid = tl.program_id(0)
    b0 = pid * TILE
    slot = scratch_ptr + pid * 2 * half
    _transpose_in(x_ptr, slot, b0, batch, in_features, TILE, BN)
    tl.debug_barrier()
    for s in range(n_steps):
        count = tl.load(table_ptr + 5 * s)
        m = tl.load(table_ptr + 5 * s + 1)
        k = tl.load(table_ptr + 5 * s + 2)
        n = tl.load(table_ptr + 5 * s + 3) * TILE
        a_ptr = mats_ptr + tl.load(table_ptr + 5 * s + 4)
        src = slot + (s % 2) * half
        dst = slot + ((s + 1) % 2) * half
        for c in range(count):
            for i0 in range(0, m, BM):
                rows = i0 + tl.arange(0, BM)
                for j0 in range(0, n, BN):
                    cols = j0 + tl.arange(0, BN)
                    acc = tl.zeros((BM, BN), dtype=tl.float32)
                    for p0 in range(0, k, BK):
                        ks = p0 + tl.arange(0, BK)
                        a = tl.load(a_ptr + rows[:, None] * k + ks[None, :],
                                    mask=(rows[:, None] < m) & (ks[None, :] < k), other=0.0)
                        b = tl.load(src + c * k * n + ks[:, None] * n + cols[None, :],
                                    mask=(ks[:, None] < k) & (cols[None, :] < n), other=0.0)
                        acc += tl.dot(a, b, input_precision="ieee")
                    tl.store(dst + c * m * n + rows[:, None] * n + cols[None, :], acc,
                             mask=(rows[:, None] < m) & (cols[None, :] < n))
        tl.debug_barrier()
    # the final state (out_features x TILE) -> rows of y
    final = slot + (n_steps % 2) * half
    t = tl.arange(0, TILE)
    for f0 in range(0, out_features, BN):
        f = f0 + tl.arange(0, BN)
        v = tl.load(final + f[:, None] * TILE + t[None, :], mask=f[:, None] < out_features, other=0.0)
        tl.store(y_ptr + (b0 + t[None, :]) * out_features + f[:, None], v,
                 mask=(f[:, None] < out_features) & (b0 + t[None, :] < batch))


def chain_forward(x: torch.Tensor, mats: list[torch.Tensor], steps: list[tuple[int, int, int, int]],
                  tile: int = 16) -> torch.Tensor:
    """y (B, out) of the ltr chain: ``mats[s]`` is A_s (m x k) and ``steps[s] = (count, m, k, rest)``."""
    batch, in_features = x.shape
    out_features = steps[-1][0] * steps[-1][1] * steps[-1][3]
    offsets, total = [], 0
    for a in mats:
        offsets.append(total)
        total += a.numel()
    flat = torch.cat([a.reshape(-1) for a in mats]).contiguous()
    rows = tuple((*s, o) for s, o in zip(steps, offsets))
    table = device_constant(("mpo_steps", rows), x.device, lambda: torch.tensor(rows, dtype=torch.int64))
    sizes = [s[0] * s[2] * s[3] for s in steps] + [out_features]
    half = max(sizes) * tile
    n_tiles = triton.cdiv(batch, tile)
    scratch = torch.empty(n_tiles * 2 * half, dtype=torch.float32, device=x.device)
    y = torch.empty(batch, out_features, dtype=x.dtype, device=x.device)
    _chain_forward_kernel[(n_tiles,)](x.contiguous(), y, flat, table, scratch, batch, in_features, out_features,
                                      len(steps), half, TILE=tile, BM=16, BK=16, BN=16)
    return y


def supports(x, cores, bias) -> str | None:
    return None if x.dtype == torch.float32 else f"the triton backend runs in float32, got x of dtype {x.dtype}"


def _merged_forward(x, merged):
    mats, steps, tile = fused_chain(merged, x.shape[0], x.element_size())
    return chain_forward(x, mats, steps, tile=max(tile, 16))


fused_forward = contract.forward_on_merged_cores(_merged_forward)
# the fused kernel covers the forward chain only: passes that need a backward run the gemm plans
FORWARD_CHAIN = ChainKernels("triton", ("gemm", "fused"), fused_forward)
TRAINING_CHAIN = ChainKernels("triton", ("gemm",))


def forward(x, cores, bias):
    return planned_forward(x, cores, bias, FORWARD_CHAIN)


def forward_keep(x, cores, bias):
    return planned_forward(x, cores, bias, TRAINING_CHAIN, keep_states=True)


def backward(grad, needs, x, cores, bias, kept=None):
    return planned_backward(grad, needs, x, cores, bias, TRAINING_CHAIN, kept)
