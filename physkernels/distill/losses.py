"""Distillation losses, evaluated for all subsets of a level at once.

Eq. 5 of the paper, per subset ``g`` with references ``Y_a`` (one per class ``a``) and real images ``X_{b,i}``:

    L_g = sum_a ( lambda d_aa - sum_{b != a} d_ab ),   d_ab = sum_i |f(Y_a) - f(X_{b,i})|^2,   lambda = 19.

Expanding the square, ``d_ab = m_b |f(Y_a)|^2 - 2 f(Y_a) . S_b + Q_b`` with the per-(subset, class) count
``m_b``, embedding sum ``S_b = sum_i f(X_{b,i})`` and squared-norm sum ``Q_b = sum_i |f(X_{b,i})|^2``, so the real
images enter only through scatter sums (``index_add_``) computed once per embedding net, and the loss of every
subset is a handful of batched tensor ops. ``L_g`` is a quadratic in ``f(Y_a)`` whose curvature is
``2 (lambda m_a - sum_{b != a} m_b)``; it is bounded below only when that is positive, which
:func:`check_lambda` enforces.

The optional ArcFace variant (Deng et al.) treats the normalised references of a subset as class centres and
every real image of the subset as a sample: ``-log softmax_b(s cos(theta_{i,b} + margin [b = y_i]))`` averaged
over the subset's images, which makes the references angularly discriminative, as needed by the cosine-similarity
classification of Sec. IV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SubsetStats:
    """Scatter sums of real embeddings per (subset, class): ``count (G, n)``, ``sum (G, n, D)``, ``sq (G, n)``."""

    count: torch.Tensor
    sum: torch.Tensor
    sq: torch.Tensor


def subset_stats(features: torch.Tensor, labels: torch.Tensor, subset: torch.Tensor, groups: int,
                 num_classes: int) -> SubsetStats:
    """Per-(subset, class) count, embedding sum and squared-norm sum of ``features (N, D)`` by scatter-add."""
    key = (subset * num_classes + labels).to(features.device)
    flat = groups * num_classes
    sums = features.new_zeros(flat, features.shape[1]).index_add_(0, key, features)
    sq = features.new_zeros(flat).index_add_(0, key, features.square().sum(1))
    count = torch.bincount(key, minlength=flat).to(features.dtype)
    shape = (groups, num_classes)
    return SubsetStats(count.view(shape), sums.view(*shape, -1), sq.view(shape))


def check_lambda(counts: torch.Tensor, lam: float) -> None:
    """Raise ``ValueError`` if Eq. 5 is unbounded below: needs ``lam * m_a > sum_{b != a} m_b`` in every subset."""
    others = counts.sum(1, keepdim=True) - counts
    bad = lam * counts <= others
    if bool(bad.any()):
        g, a = (int(v) for v in torch.nonzero(bad)[0])
        raise ValueError(f"lam={lam} makes Eq. 5 unbounded below: subset {g}, class {a} has {int(counts[g, a])} "
                         f"images against {int(others[g, a])} of other classes (need lam * m_a > sum of the others)")


def eq5_distances(ref_features: torch.Tensor, stats: SubsetStats) -> torch.Tensor:
    """``d[g, a, b] = sum_i |f(Y_{g,a}) - f(X_{g,b,i})|^2`` for ``ref_features (G, n, D)``; returns ``(G, n, n)``."""
    norms = ref_features.square().sum(-1)  # (G, n)
    cross = torch.bmm(ref_features, stats.sum.transpose(1, 2))  # (G, n_a, n_b)
    return norms[:, :, None] * stats.count[:, None, :] - 2 * cross + stats.sq[:, None, :]


def eq5_loss(ref_features: torch.Tensor, stats: SubsetStats, lam: float = 19.0) -> torch.Tensor:
    """Eq. 5 for every subset: ``(G,)`` with ``L_g = sum_a ((lam + 1) d_aa - sum_b d_ab)``."""
    d = eq5_distances(ref_features, stats)
    return (lam + 1.0) * d.diagonal(dim1=1, dim2=2).sum(1) - d.sum((1, 2))


def padded_index(subset: torch.Tensor, groups: int) -> torch.Tensor:
    """``(G, M_max)`` indices of the images of each subset, ``-1`` where a subset has fewer than ``M_max``."""
    order = torch.argsort(subset, stable=True)
    sizes = torch.bincount(subset, minlength=groups)
    starts = torch.cumsum(sizes, 0) - sizes
    width = int(sizes.max())
    pos = torch.arange(width)[None, :]
    idx = order[(starts[:, None] + pos).clamp(max=order.numel() - 1)]
    return torch.where(pos < sizes[:, None], idx, torch.full_like(idx, -1))


def arcface_loss(ref_features: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, index: torch.Tensor,
                 scale: float = 30.0, margin: float = 0.5) -> torch.Tensor:
    """ArcFace loss of every subset, ``(G,)``: mean over its images of the margin-softmax cross-entropy.

    ``ref_features (G, n, D)``; ``features (N, D)`` and ``labels (N,)`` of the level's real images; ``index``
    from :func:`padded_index`. Grouped evaluation: one ``bmm`` of ``(G, M_max, D)`` by ``(G, D, n)``.
    """
    valid = index >= 0
    safe = index.clamp(min=0).to(features.device)
    x = F.normalize(features, dim=1)[safe]  # (G, M, D)
    cos = torch.bmm(x, F.normalize(ref_features, dim=-1).transpose(1, 2)).clamp(-1 + 1e-7, 1 - 1e-7)  # (G, M, n)
    y = labels.to(features.device)[safe]  # (G, M)
    cos_y = cos.gather(2, y[..., None])
    sin_y = (1 - cos_y.square()).sqrt()
    phi = cos_y * math.cos(margin) - sin_y * math.sin(margin)  # cos(theta + m)
    # beyond theta = pi - m, cos(theta + m) is no longer decreasing in theta: use the linear fallback of ArcFace
    phi = torch.where(cos_y > math.cos(math.pi - margin), phi, cos_y - math.sin(math.pi - margin) * margin)
    logits = scale * cos.scatter(2, y[..., None], phi)
    per_image = torch.logsumexp(logits, 2) - logits.gather(2, y[..., None]).squeeze(2)
    valid = valid.to(features.device)
    return (per_image * valid).sum(1) / valid.sum(1)
