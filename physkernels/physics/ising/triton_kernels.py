"""Triton multispin checkerboard Metropolis for the 2D Ising model, bit-identical to the C++ kernel.

Layout and randomness are those of ``csrc/ising.cpp`` / ``csrc/ising_rng.h``: ``words`` is an int64 tensor
``(n_words, L, L)`` whose bit ``b`` in word lattice ``w`` is chain ``64 w + b`` (set = spin up); site ``i`` of
word ``w`` in sweep ``t`` draws ``mix64(site_key + j * GAMMA)``, ``j = 1, 2, ...`` with
``site_key = stream_key(seed, w) ^ mix64(t * L^2 + i)``, and compares the draws bit by bit (most significant
first) with the 32-bit fixed-point acceptance probabilities ``exp(-4 beta)`` (one anti-aligned neighbour) and
``exp(-8 beta)`` (none). The kernel always runs the 32 comparison rounds (C++ stops once every bit is decided,
which gives the same bits). One program updates one colour of one word lattice; a sweep is two launches.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

MASK64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
SEED_OFFSET = 0x2545F4914F6CDD1D


def mix64(z: int) -> int:
    """SplitMix64 finaliser on Python ints (the host-side twin of ``mix64`` in ``csrc/ising_rng.h``)."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def stream_key(seed: int, stream: int) -> int:
    return mix64(mix64(seed + SEED_OFFSET) + stream * GAMMA)


def probability_u32(p: float) -> int:
    """``floor(p * 2^32)`` saturated to ``[0, 2^32 - 1]`` (as ``probability_u32`` in C++)."""
    return 0 if p <= 0.0 else 0xFFFFFFFF if p >= 1.0 else int(p * 4294967296.0)


def _signed(u: int) -> int:
    return u - (1 << 64) if u >= 1 << 63 else u


@triton.jit
def _mix64(z):
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB
    return z ^ (z >> 31)


@triton.jit
def _metropolis_colour_kernel(words_ptr, keys_ptr, L, n_sites, step_base, colour, p1, p0, accept_all,
                              BLOCK: tl.constexpr):
    """Sites k of one colour (k < n_sites / 2, BLOCK per program) of word program_id(0): the update of
    ``metropolis_word`` in csrc/ising_rng.h, with the draws stopping once every bit of the block is decided."""
    w = tl.program_id(0)
    k = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    half_row = L // 2
    y = k // half_row
    x = 2 * (k % half_row) + (y + colour) % 2
    active = k < n_sites // 2
    site = y * L + x
    base = words_ptr + w.to(tl.int64) * n_sites
    s = tl.load(base + site, mask=active, other=0).to(tl.uint64, bitcast=True)
    a1 = s ^ tl.load(base + y * L + (x + L - 1) % L, mask=active, other=0).to(tl.uint64, bitcast=True)
    a2 = s ^ tl.load(base + y * L + (x + 1) % L, mask=active, other=0).to(tl.uint64, bitcast=True)
    a3 = s ^ tl.load(base + ((y + L - 1) % L) * L + x, mask=active, other=0).to(tl.uint64, bitcast=True)
    a4 = s ^ tl.load(base + ((y + 1) % L) * L + x, mask=active, other=0).to(tl.uint64, bitcast=True)
    ge2 = (a1 & a2) | (a3 & a4) | ((a1 | a2) & (a3 | a4))
    anti = a1 | a2 | a3 | a4
    need1 = anti & ~ge2
    need0 = ~anti
    key = tl.load(keys_ptr + w).to(tl.uint64, bitcast=True)
    counter = key ^ _mix64((step_base + site).to(tl.uint64))
    undecided = tl.where(active, need1 | need0, 0)
    accepted = tl.zeros_like(s)
    i = 0
    while (i < 32) & (tl.max((undecided != 0).to(tl.int32), axis=0) > 0):
        counter = counter + 0x9E3779B97F4A7C15
        r = _mix64(counter)
        pbits = tl.where(((p1 >> (31 - i)) & 1) != 0, need1, 0) | tl.where(((p0 >> (31 - i)) & 1) != 0, need0, 0)
        differ = (r ^ pbits) & undecided
        accepted = accepted | (differ & pbits)
        undecided = undecided & ~differ
        i += 1
    flip = ge2 | accepted
    flip = tl.where(accept_all != 0, ~tl.zeros_like(s), flip)
    tl.store(base + site, (s ^ flip).to(tl.int64, bitcast=True), mask=active)


def metropolis_multispin(words: torch.Tensor, beta: float, n_sweeps: int, seed: int, step_offset: int) -> None:
    """Run ``n_sweeps`` checkerboard sweeps in place on int64 ``words`` ``(n_words, L, L)`` (any device Triton
    runs on: CUDA, or CPU tensors under ``TRITON_INTERPRET=1``)."""
    if words.dtype != torch.int64 or words.dim() != 3 or words.shape[1] != words.shape[2]:
        raise TypeError(f"words must be an int64 tensor (n_words, L, L), got {words.dtype} {tuple(words.shape)}")
    if not words.is_contiguous():
        raise ValueError("words must be contiguous")
    n_words, L = words.shape[0], words.shape[1]
    if L % 2 or L < 4:
        raise ValueError(f"checkerboard Metropolis needs an even L >= 4, got L={L}")
    n_sites = L * L
    keys = torch.tensor([_signed(stream_key(seed, w)) for w in range(n_words)], dtype=torch.int64,
                        device=words.device)
    p1, p0 = probability_u32(math.exp(-4.0 * beta)), probability_u32(math.exp(-8.0 * beta))
    block = min(triton.next_power_of_2(n_sites // 2), 256)
    grid = (n_words, triton.cdiv(n_sites // 2, block))
    for t in range(n_sweeps):
        for colour in (0, 1):
            _metropolis_colour_kernel[grid](words, keys, L, n_sites, (step_offset + t) * n_sites, colour, p1, p0,
                                            int(beta == 0.0), BLOCK=block)
