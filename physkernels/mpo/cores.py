"""MPO cores: the layout checks and the dense weight of Eq. 5, shared by the op, the layers, TT-SVD and the planner.

Core layout: ``cores[k]`` has shape ``(D_{k-1}, I_k, J_k, D_k)`` with ``D_0 = D_n = 1``; the represented weight has
``nn.Linear.weight``'s shape ``(prod J, prod I)``::

    W[j_1..j_n, i_1..i_n] = cores[0][:, i_1, j_1, :] @ cores[1][:, i_2, j_2, :] @ ... @ cores[n-1][:, i_n, j_n, :]

with row-major multi-indices (``i_1`` most significant).
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["mpo_shapes", "reference_mpo_weight"]


def reference_mpo_weight(cores: Sequence[torch.Tensor]) -> torch.Tensor:
    """Dense W of shape ``(prod J, prod I)`` from the cores by Eq. 5 (left-to-right partial products)."""
    partial = cores[0][0]  # (I_1, J_1, D_1): rows i_1, columns j_1, open right bond
    for core in cores[1:]:
        rows, cols, _ = partial.shape
        _, i_k, j_k, d_k = core.shape
        partial = torch.einsum("abd,dief->aibef", partial, core).reshape(rows * i_k, cols * j_k, d_k)
    return partial[..., 0].transpose(0, 1)


def mpo_shapes(cores: Sequence[torch.Tensor]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """``(in_shape, out_shape, ranks)`` of a core list, validating the layout; ranks are the n-1 inner bonds."""
    if isinstance(cores, torch.Tensor) or not isinstance(cores, (list, tuple)):
        raise TypeError(f"cores must be a list of 4-D tensors (D_prev, I_k, J_k, D_k), got {type(cores).__name__}")
    if len(cores) == 0:
        raise ValueError("cores must hold at least one core, got an empty list")
    for k, core in enumerate(cores):
        if not isinstance(core, torch.Tensor):
            raise TypeError(f"cores[{k}] must be a torch.Tensor, got {type(core).__name__}")
    shapes = tuple(tuple(core.shape) for core in cores)
    found = _layout_memo.get(shapes)
    if found is None:
        if len(_layout_memo) > 4096:
            _layout_memo.clear()
        found = _layout_memo[shapes] = _layout(shapes)
    return found


# The checks of _layout run on every call, so their results are memoised on the shapes; a plain dict (not
# functools.lru_cache, which torch.compile's tracer warns about when it meets one).
_layout_memo: dict[tuple, tuple] = {}


def _layout(shapes: tuple[tuple[int, ...], ...]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """The structural checks of :func:`mpo_shapes` on the cores' shapes."""
    for k, shape in enumerate(shapes):
        if len(shape) != 4:
            raise ValueError(f"cores[{k}] must be 4-D (D_prev, I_k, J_k, D_k), got shape {tuple(shape)}")
        if min(shape) < 1:
            raise ValueError(f"cores[{k}] has an empty dimension: shape {tuple(shape)}")
    if shapes[0][0] != 1:
        raise ValueError(f"cores[0] must have left bond dimension 1, got shape {tuple(shapes[0])}")
    if shapes[-1][3] != 1:
        raise ValueError(f"cores[{len(shapes) - 1}] must have right bond dimension 1, got shape {tuple(shapes[-1])}")
    for k in range(len(shapes) - 1):
        if shapes[k][3] != shapes[k + 1][0]:
            raise ValueError(f"bond mismatch: cores[{k}] has right bond {shapes[k][3]} but cores[{k + 1}] has left "
                             f"bond {shapes[k + 1][0]}")
    in_shape = tuple(int(s[1]) for s in shapes)
    out_shape = tuple(int(s[2]) for s in shapes)
    ranks = tuple(int(s[3]) for s in shapes[:-1])
    return in_shape, out_shape, ranks
