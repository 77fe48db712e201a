"""``taylor_linear``'s math in plain torch: the index tables of the fused kernels, the materialised-monomial
reference every backend is checked against, and argument validation.

    y[b, a] = bias[a] + sum_t W[a, t] * F[b, t],    F[b, t] = x[b, i1] * ... * x[b, id]

over all monomials t = (i1 <= ... <= id) of degree d = 1..order (``physkernels.taylor.monomials`` order).
"""

from __future__ import annotations

import numpy as np
import torch

from ...taylor import check_order, monomial_count, monomials, row_table, term_rows
from .._builder import OP_DTYPES

_tables: dict[tuple, torch.Tensor] = {}


def index_table(kind: str, n: int, order: int, device: torch.device) -> torch.Tensor:
    """Index tables as int32/int64 tensors on ``device``, built once per (kind, n, order, device): ``rows`` and
    ``term_rows`` (the fused kernels' prefix-row layout, :func:`physkernels.taylor.row_table`) or ``monomials``
    ((T, order) factor indices, -1 past each term's degree)."""
    key = (kind, n, order, str(device))
    if key not in _tables:
        if kind == "rows":
            array = row_table(n, order)
        elif kind == "term_rows":
            array = term_rows(n, order)
        else:
            terms = monomials(n, order)
            array = np.full((len(terms), order), -1, dtype=np.int64)
            for t, m in enumerate(terms):
                array[t, :len(m)] = m
        _tables[key] = torch.from_numpy(np.array(array, copy=True)).to(device)
    return _tables[key]


def reference_features(x: torch.Tensor, order: int) -> torch.Tensor:
    """All monomials of x (B, n) up to ``order``, materialised: (B, T), each the product of its index tuple."""
    n = x.shape[-1]
    index = index_table("monomials", n, order, x.device)
    padded = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)   # index -1 picks the trailing 1
    features = padded[:, index[:, 0]]
    for k in range(1, order):
        features = features * padded[:, index[:, k]]
    return features


def reference_taylor_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                            order: int) -> torch.Tensor:
    """Explicit-monomial reference: materialised features (B, T) times W^T, plus bias. Plain torch, any shape."""
    lead = x.shape[:-1]
    y = reference_features(x.reshape(-1, x.shape[-1]), order) @ weight.t()
    if bias is not None:
        y = y + bias
    return y.reshape(*lead, weight.shape[0])


def _check_tensor(name: str, t, dims: int | None = None) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in OP_DTYPES:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {t.dtype}")
    if dims is not None and t.dim() != dims:
        raise ValueError(f"{name} must be {dims}-D, got shape {tuple(t.shape)}")


def validate(x, weight, bias, order) -> int:
    """Check every argument (ValueError/TypeError naming it); return the normalised order."""
    order = check_order(order)
    _check_tensor("x", x)
    _check_tensor("weight", weight, dims=2)
    if x.dim() < 1 or x.shape[-1] < 1:
        raise ValueError(f"x must have shape (..., in_features) with in_features >= 1, got {tuple(x.shape)}")
    n = x.shape[-1]
    terms = monomial_count(n, order)
    if weight.shape[1] != terms:
        raise ValueError(f"weight must have shape (out_features, {terms}) for in_features={n} and order={order} "
                         f"(C(n + order, order) - 1 terms), got {tuple(weight.shape)}")
    if bias is not None:
        _check_tensor("bias", bias, dims=1)
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and (t.dtype != x.dtype or t.device != x.device):
            raise TypeError(f"{name} must match x's dtype and device ({x.dtype}, {x.device}), "
                            f"got {t.dtype} on {t.device}")
    return order
