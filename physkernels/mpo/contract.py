"""Execute a :class:`~physkernels.mpo.planner.Plan` with torch matmuls (and, for ``fused`` plans, a chain kernel).

Shapes: x ``(B, prod I)``, cores ``(D_{k-1}, I_k, J_k, D_k)``, y ``(B, prod J)``. The chain runs with the batch
as the fastest index (see the planner's docstring for the per-step GEMMs); gradients are explicit (no autograd).
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch

from .planner import Plan

Tensor = torch.Tensor
Groups = Sequence[tuple[int, int]]
# A fused chain kernel runs a whole plan over the cores and the plan's groups (it merges them itself):
# fused_forward(x, cores, groups) -> (y, kept), kept: tensors the backward may reuse (possibly none);
# fused_backward(grad, x, cores, groups, kept or None, need_x) -> (dx, or None when not need_x; [d core]).
# forward_on_merged_cores() / backward_on_merged_cores() adapt kernels that take merged cores instead.
FusedForward = Callable[[Tensor, Sequence[Tensor], Groups], tuple[Tensor, list[Tensor]]]
FusedBackward = Callable[[Tensor, Tensor, Sequence[Tensor], Groups, Optional[Sequence[Tensor]], bool],
                         tuple[Optional[Tensor], list[Tensor]]]


# ----------------------------------------------------------------------------------------------------------------
# Merging adjacent cores and projecting gradients back onto them
# ----------------------------------------------------------------------------------------------------------------
# Cores c_0..c_{m-1} merge left to right through partial products kept as matrices in *interleaved* order:
# P_1 = c_0 as (D_l I_0 J_0, D_1) and P_{k+1} = P_k @ c_k (D_k, I_k J_k D_{k+1}), whose rows are
# (D_l, i_0, j_0, ..., i_k, j_k) row-major. Each step is one GEMM and a free view; a single permute at the end
# groups the i's and the j's. The backward permutes the merged gradient once and runs the GEMMs backwards.
def _interleaved_product(cores: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """``(P_m, [P_1, ..., P_{m-1}])``: the full product as (D_l I_0 J_0 ... I_{m-2} J_{m-2}, I J D_r) and the
    partials each later core multiplied (P_1 is a view of ``cores[0]``)."""
    partials = [cores[0].reshape(-1, cores[0].shape[3])]
    for core in cores[1:-1]:
        partials.append((partials[-1] @ core.reshape(core.shape[0], -1)).view(-1, core.shape[3]))
    last = cores[-1]
    return partials[-1] @ last.reshape(last.shape[0], -1), partials


def _grouped_axes(m: int, outputs_first: bool) -> list[int]:
    """Axes of the view ``(D_l, i_0, j_0, ..., i_{m-1}, j_{m-1}, D_r)`` that bring it to ``(D_l, i.., j.., D_r)``
    (``(D_l, j.., i.., D_r)`` with ``outputs_first``)."""
    ins, outs = list(range(1, 2 * m, 2)), list(range(2, 2 * m + 1, 2))
    return [0, *(outs + ins if outputs_first else ins + outs), 2 * m + 1]


def _interleaved_view(cores: Sequence[Tensor]) -> list[int]:
    return [cores[0].shape[0], *[s for c in cores for s in c.shape[1:3]], cores[-1].shape[3]]


def merge_group(cores: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """Merge consecutive cores into one ``(D_l, prod I, prod J, D_r)`` (row-major merged indices, the first core's
    most significant); also return the partial products the backward needs."""
    if len(cores) == 1:
        return cores[0], []
    product, partials = _interleaved_product(cores)
    dl, dr = cores[0].shape[0], cores[-1].shape[3]
    merged = product.view(_interleaved_view(cores)).permute(_grouped_axes(len(cores), False))
    return merged.reshape(dl, math.prod([c.shape[1] for c in cores]), math.prod([c.shape[2] for c in cores]), dr), \
        partials


def merge_group_backward(cores: Sequence[Tensor], partials: Sequence[Tensor], grad: Tensor) -> list[Tensor]:
    """Gradients of every core of a group from the gradient of the merged core."""
    m = len(cores)
    if m == 1:
        return [grad]
    axes = _grouped_axes(m, False)
    grouped = [cores[0].shape[0], *[c.shape[1] for c in cores], *[c.shape[2] for c in cores], cores[-1].shape[3]]
    g = grad.reshape(grouped).permute([axes.index(k) for k in range(len(axes))]).reshape(-1)
    grads: list[Optional[Tensor]] = [None] * m
    for k in range(m - 1, 0, -1):
        core = cores[k]
        g = g.reshape(-1, core.shape[1] * core.shape[2] * core.shape[3])
        grads[k] = (partials[k - 1].t() @ g).view(core.shape)
        g = g @ core.reshape(core.shape[0], -1).t()
    grads[0] = g.view(cores[0].shape)
    return grads


def dense_weight(cores: Sequence[Tensor]) -> Tensor:
    """W ``(prod J, prod I)`` of a whole MPO (outer bonds 1), contiguous; differentiable by autograd (GEMMs, views
    and one permute)."""
    if len(cores) == 1:
        return cores[0][0, :, :, 0].t().contiguous()
    product, _ = _interleaved_product(cores)
    weight = product.view(_interleaved_view(cores)).permute(_grouped_axes(len(cores), True))
    return weight.reshape(math.prod([c.shape[2] for c in cores]), math.prod([c.shape[1] for c in cores]))


# ----------------------------------------------------------------------------------------------------------------
# Chain steps (batched GEMMs, batch fastest)
# ----------------------------------------------------------------------------------------------------------------
def step_matrix(core: Tensor, direction: str) -> Tensor:
    """A of a step: ltr ``(J D_r) x (D_l I)``; rtl ``(D_l J) x (I D_r)``."""
    dl, i, j, dr = core.shape
    if direction == "ltr":
        return core.permute(2, 3, 0, 1).reshape(j * dr, dl * i)
    return core.permute(0, 2, 1, 3).reshape(dl * j, i * dr)


def matrix_grad_to_core(grad_a: Tensor, shape, direction: str) -> Tensor:
    dl, i, j, dr = shape
    if direction == "ltr":
        return grad_a.view(j, dr, dl, i).permute(2, 3, 0, 1)
    return grad_a.view(dl, j, i, dr).permute(0, 2, 1, 3)


def _order(merged: Sequence[Tensor], direction: str) -> list[int]:
    return list(range(len(merged))) if direction == "ltr" else list(range(len(merged) - 1, -1, -1))


def _counts(merged: Sequence[Tensor], direction: str) -> list[int]:
    """G of each step, in run order: prod J of the groups already applied (ltr) or prod I to the left (rtl)."""
    if direction == "ltr":
        return [math.prod(c.shape[2] for c in merged[:g]) for g in range(len(merged))]
    return [math.prod(c.shape[1] for c in merged[:g]) for g in range(len(merged) - 1, -1, -1)]


def batched_step(a: Tensor, s: Tensor) -> Tensor:
    """``out[g] = a @ s[g]`` for a ``(m, k)`` and s ``(count, k, n)``: one bmm with ``a`` broadcast (stride 0).

    Not ``torch.matmul(a, s)``: when ``a`` requires grad (an unmerged core inside the custom op) matmul folds
    ``s`` into one ``(count n, k)`` GEMM, paying a transposing copy of ``s`` and of the output (3-5x the GEMM).
    """
    return torch.bmm(a.expand(s.shape[0], -1, -1), s)


def chain_states(x: Tensor, merged: Sequence[Tensor], direction: str) -> list[Tensor]:
    """Batch-last states ``S_0 = x^T, S_1, ..., S_n`` of the chain; ``S_n`` is ``y^T`` as ``(prod J, B)``."""
    states = [x.t().contiguous()]
    for g, count in zip(_order(merged, direction), _counts(merged, direction)):
        a = step_matrix(merged[g], direction)
        s = states[-1].view(count, a.shape[1], -1)
        states.append(batched_step(a, s) if count > 1 else (a @ s[0]).unsqueeze(0))
    return states


def chain_forward(x: Tensor, merged: Sequence[Tensor], direction: str) -> Tensor:
    return chain_states(x, merged, direction)[-1].reshape(-1, x.shape[0]).t().contiguous()


def chain_backward(grad: Tensor, x: Tensor, merged: Sequence[Tensor], direction: str,
                   states: Optional[Sequence[Tensor]] = None,
                   need_x: bool = True) -> tuple[Optional[Tensor], list[Tensor]]:
    """``(dx, [d merged core])`` of the chain; ``states`` are the forward's (recomputed when None); dx is None
    (its step skipped) when not ``need_x``."""
    if states is None:
        states = chain_states(x, merged, direction)
    batch = x.shape[0]
    g_state = grad.t().contiguous()
    grads: list[Optional[Tensor]] = [None] * len(merged)
    order, counts = _order(merged, direction), _counts(merged, direction)
    for step in range(len(order) - 1, -1, -1):
        g, count = order[step], counts[step]
        a = step_matrix(merged[g], direction)
        s = states[step].view(count, a.shape[1], -1)
        d_out = g_state.view(count, a.shape[0], -1)
        if count == 1:
            grad_a = d_out[0] @ s[0].t()
        else:
            grad_a = torch.bmm(d_out, s.transpose(1, 2)).sum(0)  # no permuting copy of the big states
        grads[g] = matrix_grad_to_core(grad_a, merged[g].shape, direction)
        if step == 0 and not need_x:
            return None, grads
        g_state = a.t() @ d_out[0] if count == 1 else batched_step(a.t(), d_out)
    return g_state.reshape(-1, batch).t().contiguous(), grads


def merge_groups(cores: Sequence[Tensor], groups: Groups) -> tuple[list[Tensor], list[list[Tensor]]]:
    """One merged core per group, and each group's partial products (for :func:`merge_groups_backward`)."""
    merged, tapes = [], []
    for a, b in groups:
        core, partials = merge_group(cores[a:b])
        merged.append(core)
        tapes.append(partials)
    return merged, tapes


def merge_groups_backward(cores: Sequence[Tensor], groups: Groups, tapes,
                          grad_merged: Sequence[Tensor]) -> list[Tensor]:
    """Every core's gradient from the merged cores' gradients."""
    grads = []
    for (a, b), partials, g in zip(groups, tapes, grad_merged):
        grads += merge_group_backward(cores[a:b], partials, g)
    return grads


def _split_merged(groups: Groups, states: Sequence[Tensor]):
    """Inverse of ``merged + flat tapes``: the merged cores, each group's tape, and what follows them."""
    merged = list(states[:len(groups)])
    pos, tapes = len(groups), []
    for a, b in groups:
        tapes.append(list(states[pos:pos + b - a - 1]))
        pos += b - a - 1
    return merged, tapes, list(states[pos:])


def forward_on_merged_cores(kernel: Callable[[Tensor, list[Tensor]], Tensor]) -> FusedForward:
    """A fused chain kernel over merged cores (``kernel(x, merged) -> y``) as the (cores, groups) form
    :func:`run_forward` takes: the groups are merged with torch matmuls first and kept for the backward."""

    def fused_forward(x, cores, groups):
        merged, tapes = merge_groups(cores, groups)
        return kernel(x, merged), merged + [t for tape in tapes for t in tape]

    return fused_forward


def backward_on_merged_cores(kernel: Callable[[Tensor, Tensor, list[Tensor], bool],
                                              tuple[Optional[Tensor], list[Tensor]]]) -> FusedBackward:
    """``kernel(grad, x, merged, need_x) -> (dx, [d merged core])`` as the (cores, groups) form
    :func:`run_backward` takes: the forward's merged cores (merged again when not kept), then the merged gradients
    projected onto the cores."""

    def fused_backward(grad, x, cores, groups, kept, need_x):
        merged, tapes = _split_merged(groups, kept)[:2] if kept else merge_groups(cores, groups)
        grad_x, grad_merged = kernel(grad, x, merged, need_x)
        return grad_x, merge_groups_backward(cores, groups, tapes, grad_merged)

    return fused_backward


# ----------------------------------------------------------------------------------------------------------------
# Whole plans
# ----------------------------------------------------------------------------------------------------------------
def run_forward(plan: Plan, x: Tensor, cores: Sequence[Tensor], fused: Optional[FusedForward] = None,
                keep_states: bool = False):
    """``x @ W^T`` for x ``(B, prod I)`` by ``plan``.

    With ``keep_states`` returns ``(y, states)``: the merged cores, the merge partial products and (gemm chains)
    the chain's intermediate states, for :func:`run_backward`; for fused plans what the kernel kept (the C++
    kernel keeps nothing: it merges again and recomputes the chain in cache).
    """
    if plan.kernel == "fused":
        if fused is None:
            raise RuntimeError("this plan needs a fused chain kernel but none was given")
        y, kept = fused(x, cores, plan.groups)
        return (y, kept) if keep_states else y
    merged, tapes = merge_groups(cores, plan.groups)
    chain: list[Tensor] = []
    if plan.dense:
        y = x @ merged[0][0, :, :, 0]
    elif keep_states:
        chain = chain_states(x, merged, plan.direction)
        y = chain.pop().reshape(-1, x.shape[0]).t().contiguous()
    else:
        y = chain_forward(x, merged, plan.direction)
    if not keep_states:
        return y
    return y, merged + [t for group in tapes for t in group] + chain


def run_backward(plan: Plan, grad: Tensor, x: Tensor, cores: Sequence[Tensor],
                 fused: Optional[FusedBackward] = None, states: Optional[Sequence[Tensor]] = None,
                 need_x: bool = True) -> list[Optional[Tensor]]:
    """``[dx, d cores[0], ..., d cores[n-1]]`` for the upstream gradient ``grad`` (B, prod J).

    ``states``: what ``run_forward(..., keep_states=True)`` returned with the same plan (recomputed when None).
    Without ``need_x`` dx is None and not computed (x needs no gradient, e.g. a first layer's input).
    """
    if plan.kernel == "fused":
        if fused is None:
            raise RuntimeError("this plan needs a fused chain kernel but none was given")
        grad_x, grads = fused(grad, x, cores, plan.groups, states or None, need_x)
        return [grad_x, *grads]
    if states:
        merged, tapes, chain = _split_merged(plan.groups, states)
        chain = chain or None  # the dense plan keeps no chain states
    else:
        (merged, tapes), chain = merge_groups(cores, plan.groups), None
    if plan.dense:
        w_t = merged[0][0, :, :, 0]  # (prod I, prod J) = W^T
        grad_x = grad @ w_t.t() if need_x else None
        grad_merged = [(x.t() @ grad).view(merged[0].shape)]
    else:
        grad_x, grad_merged = chain_backward(grad, x, merged, plan.direction, chain, need_x)
    return [grad_x, *merge_groups_backward(cores, plan.groups, tapes, grad_merged)]
