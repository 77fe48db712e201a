"""Triton fused block-Gibbs kernel of the Bernoulli RBM (one program per block of chains).

Each program keeps its chains' visible and hidden states and the whole (padded) weight matrix on chip for all
``k`` steps: ``h ~ Bernoulli(sigmoid(v W + c))`` then ``v ~ Bernoulli(sigmoid(h W^T + b))``, uniforms from
``tl.rand`` (Philox keyed by a mix of ``(seed, step_offset)``, counter = ((step * 2 + phase) * batch + chain) *
max(nv, nh) + unit, an int32: ``2 k batch max(nv, nh) < 2^31`` per call). The full-tile design
limits ``nv, nh`` to :data:`MAX_UNITS`; bigger RBMs use the C++ or reference backends.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_UNITS = 128


@triton.jit
def _gibbs_kernel(v_ptr, w_ptr, b_ptr, c_ptr, v_out_ptr, h_out_ptr, batch, nv, nh, k, seed,
                  BLOCK_B: tl.constexpr, NV_P: tl.constexpr, NH_P: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BLOCK_B + tl.arange(0, BLOCK_B)
    iv = tl.arange(0, NV_P)
    ih = tl.arange(0, NH_P)
    rmask = rows < batch
    vmask = iv < nv
    hmask = ih < nh
    units = tl.maximum(nv, nh)
    v = tl.load(v_ptr + rows[:, None] * nv + iv[None, :], mask=rmask[:, None] & vmask[None, :], other=0.0)
    w = tl.load(w_ptr + iv[:, None] * nh + ih[None, :], mask=vmask[:, None] & hmask[None, :], other=0.0)
    b = tl.load(b_ptr + iv, mask=vmask, other=0.0)
    c = tl.load(c_ptr + ih, mask=hmask, other=0.0)
    h = tl.zeros((BLOCK_B, NH_P), dtype=v.dtype)
    for step in range(k):
        act_h = tl.dot(v, w, input_precision="ieee") + c[None, :]
        offs_h = ((2 * step) * batch + rows[:, None]) * units + ih[None, :]
        h = tl.where((tl.rand(seed, offs_h) < tl.sigmoid(act_h)) & hmask[None, :], 1.0, 0.0).to(v.dtype)
        act_v = tl.dot(h, tl.trans(w), input_precision="ieee") + b[None, :]
        offs_v = ((2 * step + 1) * batch + rows[:, None]) * units + iv[None, :]
        v = tl.where((tl.rand(seed, offs_v) < tl.sigmoid(act_v)) & vmask[None, :], 1.0, 0.0).to(v.dtype)
    tl.store(v_out_ptr + rows[:, None] * nv + iv[None, :], v, mask=rmask[:, None] & vmask[None, :])
    tl.store(h_out_ptr + rows[:, None] * nh + ih[None, :], h, mask=rmask[:, None] & hmask[None, :])


def gibbs(v0: torch.Tensor, W: torch.Tensor, b: torch.Tensor, c: torch.Tensor, k: int, seed: int,
          step_offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` block-Gibbs steps of ``batch`` chains (float32, contiguous). Returns ``(v_k, h_k)``."""
    batch, nv = v0.shape
    nh = W.shape[1]
    if max(nv, nh) > MAX_UNITS:
        raise ValueError(f"the Triton RBM kernel holds W on chip: nv and nh must be <= {MAX_UNITS}, got {nv}, {nh}")
    if 2 * k * batch * max(nv, nh) >= 2**31:
        raise ValueError("k * batch * max(nv, nh) too large for the kernel's int32 random counters: split the call")
    if v0.dtype != torch.float32:
        raise TypeError(f"the Triton RBM kernel runs in float32, got {v0.dtype}")
    v_out = torch.empty_like(v0)
    h_out = torch.empty(batch, nh, dtype=v0.dtype, device=v0.device)
    # The CPU interpreter pays per program: give it few, large blocks. On a GPU, 16 chains per program.
    block_b = min(1024, max(16, triton.next_power_of_2(batch))) if v0.device.type == "cpu" else 16
    _gibbs_kernel[(triton.cdiv(batch, block_b),)](
        v0, W, b, c, v_out, h_out, batch, nv, nh, k, (seed * 1_000_003 + step_offset * 7919 + 1) % (2**31 - 1),
        BLOCK_B=block_b, NV_P=max(16, triton.next_power_of_2(nv)), NH_P=max(16, triton.next_power_of_2(nh)))
    return v_out, h_out
