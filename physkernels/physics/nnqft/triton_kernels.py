"""Triton NN-QFT ensemble kernels: one program evaluates BLOCK networks of one bag, drawing every parameter from
``tl.philox`` with the counter layout of ``csrc/nnqft_rng.h`` (key = seed, counter = (neuron, block, network lo,
network hi)), so it evaluates the same networks as the C++ and CUDA kernels; Box-Muller uses Triton's float32
log/cos/sin, so values agree with them to float rounding. Outputs accumulate in float64.

``_green_kernel`` multiplies the network outputs into every combo's product (combos given as padded point-index
rows) and writes one partial sum per (bag, block of networks, combo); partials are reduced in a fixed order, so
results are deterministic. Runs on CUDA tensors, or on CPU tensors under ``TRITON_INTERPRET=1`` (tests).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_NETS = 32
_TWO_PI = tl.constexpr(6.283185307179586)  # jit code reads only constexpr globals


@triton.jit
def _uniform(r):
    return ((r >> 8).to(tl.float32) + 0.5) * 5.9604644775390625e-8


@triton.jit
def _box_muller(r0, r1):
    radius = tl.sqrt(-2.0 * tl.log(_uniform(r0)))
    angle = _TWO_PI * _uniform(r1)
    return radius * tl.cos(angle), radius * tl.sin(angle)


@triton.jit
def _normal_block(seed, j, nets, t):
    """The four normals of Philox block t of neuron j for each network (int64 ``nets``)."""
    zero = tl.zeros_like(nets)
    r0, r1, r2, r3 = tl.philox(seed, (zero + j).to(tl.uint32), (zero + t).to(tl.uint32),
                               (nets & 0xFFFFFFFF).to(tl.uint32), (nets >> 32).to(tl.uint32))
    z0, z1 = _box_muller(r0, r1)
    z2, z3 = _box_muller(r2, r3)
    return z0, z1, z2, z3


@triton.jit
def _normal(seed, j, nets, index):
    """Normal number ``index`` (0: W1, 1: b0, 2 + i: W0[i]) of neuron j for each network."""
    z0, z1, z2, z3 = _normal_block(seed, j, nets, index // 4)
    word = index % 4
    return tl.where(word == 0, z0, tl.where(word == 1, z1, tl.where(word == 2, z2, z3)))


@triton.jit
def _evaluate(points_ptr, shift_ptr, n_points, d_in, width, w0_scale, w1_scale, b_scale, seed, nets,
              ACTIVATION: tl.constexpr, P_PAD: tl.constexpr):
    """f (BLOCK, P_PAD) float64 of the networks ``nets`` (int64) at every point (padded points give 0 + b1)."""
    cols = tl.arange(0, P_PAD)
    col_ok = cols < n_points
    shift = tl.load(shift_ptr + cols, mask=col_ok, other=0.0)
    acc = tl.zeros((nets.shape[0], P_PAD), dtype=tl.float64)
    x_0 = tl.load(points_ptr + cols * d_in, mask=col_ok, other=0.0)
    x_1 = tl.load(points_ptr + cols * d_in + 1, mask=col_ok & (cols * 0 + d_in > 1), other=0.0)
    for j in range(width):
        z0, z1, z2, z3 = _normal_block(seed, j, nets, 0)  # W1, b0, W0[0], W0[1]
        w1 = z0 * w1_scale
        pre = (z1 * b_scale)[:, None] - shift[None, :] + (z2 * w0_scale)[:, None] * x_0[None, :]
        pre += (z3 * w0_scale)[:, None] * x_1[None, :]  # x_1 = 0 when d_in = 1
        for i in range(2, d_in):
            x_i = tl.load(points_ptr + cols * d_in + i, mask=col_ok, other=0.0)
            pre += (_normal(seed, j, nets, 2 + i) * w0_scale)[:, None] * x_i[None, :]
        if ACTIVATION == 0:
            g = tl.exp(pre)
        elif ACTIVATION == 1:
            g = tl.erf(pre)
        else:
            g = tl.maximum(pre, 0.0)
        acc += (w1[:, None] * g).to(tl.float64)
    b1 = _normal(seed, 0xFFFFFFFF, nets, 0) * b_scale
    return acc + b1.to(tl.float64)[:, None]


@triton.jit
def _outputs_kernel(points_ptr, shift_ptr, out_ptr, n_points, d_in, width, w0_scale, w1_scale, b_scale, seed,
                    first_net, n_nets, ACTIVATION: tl.constexpr, P_PAD: tl.constexpr, BLOCK: tl.constexpr):
    rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    f = _evaluate(points_ptr, shift_ptr, n_points, d_in, width, w0_scale, w1_scale, b_scale, seed,
                  first_net + rows.to(tl.int64), ACTIVATION, P_PAD)
    cols = tl.arange(0, P_PAD)
    mask = (rows[:, None] < n_nets) & (cols[None, :] < n_points)
    tl.store(out_ptr + rows[:, None].to(tl.int64) * n_points + cols[None, :], f, mask=mask)


@triton.jit
def _green_kernel(points_ptr, shift_ptr, members_ptr, partial_ptr, n_points, d_in, width, w0_scale, w1_scale,
                  b_scale, seed, first_bag, nets_per_bag, n_chunks, n_combos, ACTIVATION: tl.constexpr,
                  P_PAD: tl.constexpr, MAX_ORDER: tl.constexpr, BLOCK: tl.constexpr):
    bag = tl.program_id(0) // n_chunks
    chunk = tl.program_id(0) % n_chunks
    local = chunk * BLOCK + tl.arange(0, BLOCK)
    valid = local < nets_per_bag
    nets = (first_bag + bag).to(tl.int64) * nets_per_bag + local.to(tl.int64)
    f = _evaluate(points_ptr, shift_ptr, n_points, d_in, width, w0_scale, w1_scale, b_scale, seed, nets,
                  ACTIVATION, P_PAD)
    cols = tl.arange(0, P_PAD)
    base = tl.program_id(0).to(tl.int64) * n_combos
    for c in range(n_combos):
        prod = tl.where(valid, 1.0, 0.0).to(tl.float64)
        for s in tl.static_range(MAX_ORDER):
            idx = tl.load(members_ptr + c * MAX_ORDER + s)
            column = tl.sum(tl.where(cols[None, :] == idx, f, 0.0), axis=1)
            prod = prod * tl.where(idx >= 0, column, 1.0)
        tl.store(partial_ptr + base + c, tl.sum(prod, axis=0))


def _launch_args(points: torch.Tensor, law) -> tuple:
    n_points, d_in = points.shape
    shift = torch.zeros(n_points, dtype=torch.float32, device=points.device)
    if law.activation == "gauss":
        shift = (law.sigma_b**2 + law.sigma_w**2 * (points * points).sum(1) / d_in).float()
    w0_scale = law.sigma_w / d_in**0.5
    w1_scale = law.sigma_w / law.width**0.5
    return (points.float().contiguous(), shift.contiguous(), n_points, d_in, law.width, w0_scale, w1_scale,
            float(law.sigma_b), law.seed)


def triton_outputs(points: torch.Tensor, law, first_net: int, n_nets: int) -> torch.Tensor:
    """f (n_nets, n_points) float64 of networks first_net .. first_net + n_nets - 1."""
    pts, shift, *scalars = _launch_args(points, law)
    out = torch.empty(n_nets, points.shape[0], dtype=torch.float64, device=points.device)
    grid = (triton.cdiv(n_nets, BLOCK_NETS),)
    _outputs_kernel[grid](pts, shift, out, *scalars, first_net, n_nets, ACTIVATION=law.activation_code,
                          P_PAD=triton.next_power_of_2(points.shape[0]), BLOCK=BLOCK_NETS)
    return out


def triton_bag_sums(points: torch.Tensor, law, first_bag: int, n_bags: int, nets_per_bag: int,
                    table) -> torch.Tensor:
    """Per-bag Green functions (n_bags, n_combos) float64 (partials per block of networks, fixed-order sum)."""
    pts, shift, *scalars = _launch_args(points, law)
    n_chunks = triton.cdiv(nets_per_bag, BLOCK_NETS)
    members = table.members.to(points.device).contiguous()
    partial = torch.empty(n_bags * n_chunks, table.n_combos, dtype=torch.float64, device=points.device)
    _green_kernel[(n_bags * n_chunks,)](pts, shift, members, partial, *scalars, first_bag, nets_per_bag, n_chunks,
                                        table.n_combos, ACTIVATION=law.activation_code,
                                        P_PAD=triton.next_power_of_2(points.shape[0]), MAX_ORDER=table.max_order,
                                        BLOCK=BLOCK_NETS)
    return partial.view(n_bags, n_chunks, table.n_combos).sum(1) / nets_per_bag
