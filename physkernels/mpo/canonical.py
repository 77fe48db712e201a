"""Canonical forms of an MPO, bond spectra and entanglement entropies (paper Sec. IV).

Viewing ``W[i_1 j_1, ..., i_n j_n]`` as a state of n sites with local dimension ``I_k J_k``, the cut at bond b
splits it into the sites 1..b and b+1..n. In mixed-canonical form with its centre next to that bond, the singular
values of the centre core are the Schmidt coefficients of that cut: the singular values of the dense W unfolded
there (:func:`physkernels.mpo.tensor_train.bipartition_matrix`). The entanglement entropy of the bond is
``S_b = -sum_a p_a log p_a`` with ``p_a = s_a^2 / sum s^2`` (natural log).
"""

from __future__ import annotations

from typing import Sequence

import torch

from .tensor_train import validate_cores


def _check_center(center, n: int) -> int:
    if isinstance(center, bool) or not isinstance(center, int):
        raise TypeError(f"center must be an int core index, got {type(center).__name__}")
    if not -n <= center < n:
        raise ValueError(f"center must be a core index in [0, {n}) (or negative from the end), got {center}")
    return center % n


def _absorb_right(core: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``matrix @ core`` on the left bond: (r, D_{k-1}) x (D_{k-1}, I, J, D_k) -> (r, I, J, D_k)."""
    return torch.einsum("ra,aijb->rijb", matrix, core)


def _absorb_left(core: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``core @ matrix`` on the right bond: (D_{k-1}, I, J, D_k) x (D_k, r) -> (D_{k-1}, I, J, r)."""
    return torch.einsum("aijb,br->aijr", core, matrix)


def canonicalize(cores: Sequence[torch.Tensor], center: int) -> list[torch.Tensor]:
    """Mixed-canonical form with orthogonality centre ``center`` (the represented W is unchanged).

    Cores left of the centre become left-orthonormal (``core.reshape(D_{k-1} I_k J_k, D_k)`` has orthonormal
    columns), cores right of it right-orthonormal (``core.reshape(D_{k-1}, I_k J_k D_k)`` has orthonormal rows);
    then ``||W||_F = ||cores[center]||_F``. Done by QR sweeps from both ends towards the centre. A bond larger
    than its useful rank (see :func:`physkernels.mpo.useful_ranks`) shrinks to it; differentiable.
    """
    cores = validate_cores(cores)
    n = len(cores)
    center = _check_center(center, n)
    cores = list(cores)
    for k in range(center):
        d0, i, j, d1 = cores[k].shape
        q, r = torch.linalg.qr(cores[k].reshape(d0 * i * j, d1))
        cores[k] = q.reshape(d0, i, j, q.shape[1])
        cores[k + 1] = _absorb_right(cores[k + 1], r)
    for k in range(n - 1, center, -1):
        d0, i, j, d1 = cores[k].shape
        q, r = torch.linalg.qr(cores[k].reshape(d0, i * j * d1).transpose(0, 1))
        cores[k] = q.transpose(0, 1).reshape(q.shape[1], i, j, d1)
        cores[k - 1] = _absorb_left(cores[k - 1], r.transpose(0, 1))
    return cores


def bond_spectra(cores: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Singular values at each bond b = 1..n-1, descending: ``min(D_b, rank)`` values per bond.

    They equal the leading singular values of W unfolded at the same bipartition, rows ``(i_1 j_1 .. i_b j_b)``.
    Left-canonicalises, then sweeps right to left with SVDs: the SVD of core k (everything left of it
    left-orthonormal, everything right of it right-orthonormal) gives the spectrum of bond k-1. Detached.
    """
    cores = canonicalize([c.detach() for c in cores], center=len(cores) - 1)
    spectra = []
    for k in range(len(cores) - 1, 0, -1):
        d0, i, j, d1 = cores[k].shape
        u, s, vh = torch.linalg.svd(cores[k].reshape(d0, i * j * d1), full_matrices=False)
        cores[k] = vh.reshape(vh.shape[0], i, j, d1)
        cores[k - 1] = _absorb_left(cores[k - 1], u * s)
        spectra.append(s)
    return spectra[::-1]


def entanglement_entropy(spectra: Sequence[torch.Tensor]) -> torch.Tensor:
    """``S_b = -sum p log p`` with ``p = s^2 / sum s^2`` for each bond spectrum (zeros contribute 0).

    Returns a float64 tensor of shape ``(len(spectra),)``; natural logarithm, so a bond with r equal singular
    values has ``S = log r``.
    """
    entropies = []
    for s in spectra:
        weights = s.to(torch.float64) ** 2
        total = weights.sum()
        p = weights / total if total > 0 else weights
        entropies.append(-torch.special.xlogy(p, p).sum())
    return torch.stack(entropies)
