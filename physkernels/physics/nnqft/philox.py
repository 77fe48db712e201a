"""Plain-torch Philox4x32-10 and the parameter stream of the ensemble kernels (the reference path).

Same counter layout as ``csrc/nnqft_rng.h`` (the C++, CUDA and Triton kernels):
key = (seed mod 2^32, seed >> 32); counter = (neuron j, word block t, network mod 2^32, network >> 32);
block 0 holds (W1_j, b0_j, W0_j[0], W0_j[1]), block t >= 1 holds W0_j[4t-2 .. 4t+1]; the output bias b1 is the
first normal of neuron 0xFFFFFFFF. Normals come from Box-Muller on u = ((r >> 8) + 1/2) 2^-24.

uint32 words live in int64 tensors; 32x32 -> 64-bit products are split into 16-bit halves so nothing overflows.
"""

from __future__ import annotations

import math

import torch

PHILOX_M = (0xD2511F53, 0xCD9E8D57)
PHILOX_W = (0x9E3779B9, 0xBB67AE85)
BIAS_NEURON = 0xFFFFFFFF
_MASK32 = 0xFFFFFFFF


def _mulhilo(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hi, lo) 32-bit halves of a * b for a constant a < 2^32 and uint32 words b (int64 tensor)."""
    p_lo = a * (b & 0xFFFF)  # < 2^48
    p_hi = a * (b >> 16)  # < 2^48
    mid = p_lo + ((p_hi & 0xFFFF) << 16)  # < 2^49
    return (p_hi >> 16) + (mid >> 32), mid & _MASK32


def philox4x32_10(counter: tuple[torch.Tensor, ...], seed: int) -> tuple[torch.Tensor, ...]:
    """Philox4x32-10 of four uint32 counter words (broadcastable int64 tensors) under the 64-bit key ``seed``."""
    c0, c1, c2, c3 = (torch.as_tensor(c, dtype=torch.int64) for c in counter)
    k0, k1 = seed & _MASK32, (seed >> 32) & _MASK32
    for _ in range(10):
        hi0, lo0 = _mulhilo(PHILOX_M[0], c0)
        hi1, lo1 = _mulhilo(PHILOX_M[1], c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0, k1 = (k0 + PHILOX_W[0]) & _MASK32, (k1 + PHILOX_W[1]) & _MASK32
    return c0, c1, c2, c3


def uniform01(r: torch.Tensor) -> torch.Tensor:
    """(r >> 8 + 1/2) 2^-24 in float64: the kernels' uniform in (0, 1), bit for bit."""
    return ((r >> 8).to(torch.float64) + 0.5) * 2.0**-24


def box_muller(r0: torch.Tensor, r1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two standard normals (float64) from two uint32 words."""
    radius = torch.sqrt(-2.0 * torch.log(uniform01(r0)))
    angle = 2.0 * math.pi * uniform01(r1)
    return radius * torch.cos(angle), radius * torch.sin(angle)


def neuron_normals(neurons: torch.Tensor, nets: torch.Tensor, seed: int, n_normals: int) -> torch.Tensor:
    """The first ``n_normals`` normals of each (network, neuron): shape (len(nets), len(neurons), n_normals).

    Normal 0 is W1, 1 is b0, 2 .. are W0[0 ..] (unscaled).
    """
    j = neurons[None, :]
    lo, hi = (nets & _MASK32)[:, None], (nets >> 32)[:, None]
    blocks = []
    for t in range((n_normals + 3) // 4):
        r = philox4x32_10((j, torch.full_like(j, t), lo, hi), seed)
        blocks += [*box_muller(r[0], r[1]), *box_muller(r[2], r[3])]
    return torch.stack(blocks, dim=-1)[..., :n_normals]
