"""``taylor_linear`` in Triton (fused: features are built per tile in registers, never stored); the float32 GPU path,
and CPU tensors under ``TRITON_INTERPRET=1``.

Feature tile F (BLOCK_B samples x BLOCK_T terms): term t sits in row r = term_rows[t] of the row table, whose
prefix (<= order-1 indices, a lower-degree monomial) is multiplied by one more x, x[j] with
j = j0_r + t - offset_r. So F = x[:, j] * prod_k x[:, prefix_k] (absent prefix slots are 1).

* forward: y tile += F @ W_tile^T, tiles of terms added with Kahan compensation;
* dW:      dW tile += g_tile^T @ F, over batch blocks (one program owns a dW tile: no atomics);
* dx:      G = g @ W_tile (dL/dF); each factor slot s of the product receives G * (the other factors),
           scattered onto x's columns with a one-hot matmul (deterministic, no atomics).

Each kernel's long loop (terms for the forward and dx, the batch for dW) is split into slices run by separate
programs when the grid alone would leave the GPU idle; each slice writes its partial sum and the partials are added
in a fixed order (:func:`~physkernels.ops._triton_launch.reduction_splits`; deterministic). ``tl.dot`` runs in TF32
for float32 where torch's matmuls may (:func:`~physkernels.ops._triton_launch.dot_precision`).
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from ... import _autotune
from .._triton_launch import dot_precision, reduction_splits
from .reference import index_table


@triton.jit
def _slot_index(rows_ptr, row, j, mask_t, s: tl.constexpr, ROW_WIDTH: tl.constexpr, PREFIX: tl.constexpr):
    """x column of factor slot s of each term (-1 where the term has no such factor)."""
    idx = j
    if s < PREFIX:
        idx = tl.load(rows_ptr + row * ROW_WIDTH + 3 + s, mask=mask_t, other=-1)
    return idx


@triton.jit
def _factor(x_rows, idx, mask2):
    """x[b, idx[t]] as a (BLOCK_B, BLOCK_T) tile; 1 where idx < 0 (absent factor), 0 outside the masks."""
    present = mask2 & (idx[None, :] >= 0)
    value = tl.load(x_rows + idx[None, :], mask=present, other=1.0)
    return tl.where(mask2, value, 0.0)


@triton.jit
def _term_columns(rows_ptr, term_rows_ptr, offs_t, mask_t, ROW_WIDTH: tl.constexpr):
    """(row, j) of each term: its row and the x column multiplying the row's prefix."""
    row = tl.load(term_rows_ptr + offs_t, mask=mask_t, other=0)
    offset = tl.load(rows_ptr + row * ROW_WIDTH, mask=mask_t, other=0)
    j0 = tl.load(rows_ptr + row * ROW_WIDTH + 1, mask=mask_t, other=0)
    return row, j0 + offs_t - offset


@triton.jit
def _features(x_rows, rows_ptr, row, j, mask_t, mask2, ROW_WIDTH: tl.constexpr, PREFIX: tl.constexpr):
    f = _factor(x_rows, j, mask2)
    for s in tl.static_range(PREFIX):
        f = f * _factor(x_rows, _slot_index(rows_ptr, row, j, mask_t, s, ROW_WIDTH, PREFIX), mask2)
    return f


@triton.jit
def _forward_kernel(x_ptr, w_ptr, bias_ptr, rows_ptr, term_rows_ptr, y_ptr, B, n, O, T, CHUNK,
                    HAS_BIAS: tl.constexpr, ROW_WIDTH: tl.constexpr, PREFIX: tl.constexpr,
                    BLOCK_B: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_O: tl.constexpr, DOT: tl.constexpr):
    """Slice ``split`` of y (terms [split * CHUNK, (split + 1) * CHUNK); the bias in slice 0) at y_ptr[split]."""
    offs_b = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    offs_o = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
    split = tl.program_id(2)
    mask_b, mask_o = offs_b < B, offs_o < O
    x_rows = x_ptr + offs_b[:, None].to(tl.int64) * n
    acc = tl.zeros((BLOCK_B, BLOCK_O), dtype=y_ptr.dtype.element_ty)
    comp = tl.zeros((BLOCK_B, BLOCK_O), dtype=y_ptr.dtype.element_ty)
    for t0 in range(split * CHUNK, tl.minimum(T, (split + 1) * CHUNK), BLOCK_T):
        offs_t = t0 + tl.arange(0, BLOCK_T)
        mask_t = offs_t < T
        row, j = _term_columns(rows_ptr, term_rows_ptr, offs_t, mask_t, ROW_WIDTH)
        f = _features(x_rows, rows_ptr, row, j, mask_t, mask_b[:, None] & mask_t[None, :], ROW_WIDTH, PREFIX)
        w = tl.load(w_ptr + offs_o[None, :].to(tl.int64) * T + offs_t[:, None],
                    mask=mask_t[:, None] & mask_o[None, :], other=0.0)
        part = tl.dot(f, w, input_precision=DOT) - comp
        total = acc + part
        comp = tl.where(total - total == 0, (total - acc) - part, 0.0)  # reset once the sum is inf/NaN
        acc = total
    acc = acc - comp
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_o, mask=mask_o, other=0.0)
        acc += tl.where(split == 0, bias, 0.0)[None, :]
    dst = y_ptr + split.to(tl.int64) * B * O + offs_b[:, None] * O + offs_o[None, :]
    tl.store(dst, acc, mask=mask_b[:, None] & mask_o[None, :])


@triton.jit
def _backward_weight_kernel(g_ptr, x_ptr, rows_ptr, term_rows_ptr, dw_ptr, B, n, O, T, CHUNK,
                            ROW_WIDTH: tl.constexpr, PREFIX: tl.constexpr,
                            BLOCK_B: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_O: tl.constexpr,
                            DOT: tl.constexpr):
    """Slice ``split`` of dW (samples [split * CHUNK, (split + 1) * CHUNK)) at dw_ptr[split]."""
    offs_t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_o = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
    split = tl.program_id(2)
    mask_t, mask_o = offs_t < T, offs_o < O
    row, j = _term_columns(rows_ptr, term_rows_ptr, offs_t, mask_t, ROW_WIDTH)
    acc = tl.zeros((BLOCK_O, BLOCK_T), dtype=dw_ptr.dtype.element_ty)
    comp = tl.zeros((BLOCK_O, BLOCK_T), dtype=dw_ptr.dtype.element_ty)
    for b0 in range(split * CHUNK, tl.minimum(B, (split + 1) * CHUNK), BLOCK_B):
        offs_b = b0 + tl.arange(0, BLOCK_B)
        mask_b = offs_b < B
        x_rows = x_ptr + offs_b[:, None].to(tl.int64) * n
        f = _features(x_rows, rows_ptr, row, j, mask_t, mask_b[:, None] & mask_t[None, :], ROW_WIDTH, PREFIX)
        g = tl.load(g_ptr + offs_b[:, None] * O + offs_o[None, :], mask=mask_b[:, None] & mask_o[None, :],
                    other=0.0)
        part = tl.dot(tl.trans(g), f, input_precision=DOT) - comp
        total = acc + part
        comp = tl.where(total - total == 0, (total - acc) - part, 0.0)  # reset once the sum is inf/NaN
        acc = total
    dst = dw_ptr + split.to(tl.int64) * O * T + offs_o[:, None].to(tl.int64) * T + offs_t[None, :]
    tl.store(dst, acc - comp, mask=mask_o[:, None] & mask_t[None, :])


@triton.jit
def _backward_input_kernel(g_ptr, x_ptr, w_ptr, rows_ptr, term_rows_ptr, dx_ptr, B, n, O, T, CHUNK,
                           ROW_WIDTH: tl.constexpr, PREFIX: tl.constexpr, BLOCK_B: tl.constexpr,
                           BLOCK_T: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_N: tl.constexpr,
                           DOT: tl.constexpr):
    """Slice ``split`` of dx (terms [split * CHUNK, (split + 1) * CHUNK)) at dx_ptr[split]."""
    offs_b = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    split = tl.program_id(1)
    mask_b = offs_b < B
    offs_i = tl.arange(0, BLOCK_N)
    x_rows = x_ptr + offs_b[:, None].to(tl.int64) * n
    acc = tl.zeros((BLOCK_B, BLOCK_N), dtype=dx_ptr.dtype.element_ty)
    comp = tl.zeros((BLOCK_B, BLOCK_N), dtype=dx_ptr.dtype.element_ty)
    for t0 in range(split * CHUNK, tl.minimum(T, (split + 1) * CHUNK), BLOCK_T):
        offs_t = t0 + tl.arange(0, BLOCK_T)
        mask_t = offs_t < T
        mask2 = mask_b[:, None] & mask_t[None, :]
        # G = dL/dF for this tile: g (B, O) @ W[:, tile] (O, T)
        grad_f = tl.zeros((BLOCK_B, BLOCK_T), dtype=dx_ptr.dtype.element_ty)
        for o0 in range(0, O, BLOCK_O):
            offs_o = o0 + tl.arange(0, BLOCK_O)
            mask_o = offs_o < O
            g = tl.load(g_ptr + offs_b[:, None] * O + offs_o[None, :], mask=mask_b[:, None] & mask_o[None, :],
                        other=0.0)
            w = tl.load(w_ptr + offs_o[:, None].to(tl.int64) * T + offs_t[None, :],
                        mask=mask_o[:, None] & mask_t[None, :], other=0.0)
            grad_f += tl.dot(g, w, input_precision=DOT)
        row, j = _term_columns(rows_ptr, term_rows_ptr, offs_t, mask_t, ROW_WIDTH)
        part = tl.zeros((BLOCK_B, BLOCK_N), dtype=dx_ptr.dtype.element_ty)
        for s in tl.static_range(PREFIX + 1):
            others = grad_f
            for m in tl.static_range(PREFIX + 1):
                if m != s:
                    others = others * _factor(x_rows, _slot_index(rows_ptr, row, j, mask_t, m, ROW_WIDTH, PREFIX),
                                              mask2)
            idx = _slot_index(rows_ptr, row, j, mask_t, s, ROW_WIDTH, PREFIX)
            one_hot = ((idx[:, None] == offs_i[None, :]) & mask_t[:, None]).to(dx_ptr.dtype.element_ty)
            part += tl.dot(others, one_hot, input_precision=DOT)
        part = part - comp
        total = acc + part
        comp = tl.where(total - total == 0, (total - acc) - part, 0.0)  # reset once the sum is inf/NaN
        acc = total
    dst = dx_ptr + split.to(tl.int64) * B * n + offs_b[:, None] * n + offs_i[None, :]
    tl.store(dst, acc - comp, mask=mask_b[:, None] & (offs_i[None, :] < n))


# (block of samples, block of terms, warps); the block of outputs covers up to 64 outputs. The first is the default
# (and the interpreter's blocks are smaller).
_GPU_CONFIGS = ((32, 64, 4), (64, 64, 4), (64, 32, 4), (128, 32, 8), (16, 128, 4))
_INTERPRETED_CONFIGS = ((16, 16, 4),)


def _configs(x: torch.Tensor) -> tuple[tuple[int, int, int], ...]:
    return _GPU_CONFIGS if x.is_cuda else _INTERPRETED_CONFIGS


def _block_o(out: int) -> int:
    return max(16, min(64, triton.next_power_of_2(out)))


def _tuned(kind: str, x: torch.Tensor, weight: torch.Tensor, launch) -> tuple[int, int, int]:
    """The (samples, terms, warps) config of kernel ``kind`` for this problem: measured over :func:`_configs` on a
    GPU (:func:`physkernels._autotune.choose`; ``launch(config)`` runs the kernel into scratch outputs)."""
    options = _configs(x)
    key = ("taylor_triton", kind, tuple(x.shape), tuple(weight.shape), x.dtype, x.device, dot_precision(x))
    found = _autotune.remembered(key)
    return found if found is not None else _autotune.choose(key, x.device, lambda: options[0], lambda: options,
                                                             launch)


def _tables(x, order):
    n = x.shape[1]
    return index_table("rows", n, order, x.device), index_table("term_rows", n, order, x.device)


def _slices(programs: int, length: int, block: int, device) -> tuple[int, int]:
    """(slices, slice length: a multiple of ``block``) of a loop over ``length`` items in blocks of ``block``."""
    splits = reduction_splits(programs, triton.cdiv(length, block), device)
    chunk = triton.cdiv(triton.cdiv(length, splits), block) * block
    return triton.cdiv(length, chunk), chunk


def _sliced(x, programs: int, length: int, block: int, *shape: int) -> tuple[int, torch.Tensor]:
    """(slice length, buffer ``(slices, *shape)`` for the slices' partial results) of a split loop (:func:`_slices`)."""
    splits, chunk = _slices(programs, length, block, x.device)
    return chunk, x.new_empty(splits, *shape)


def _summed(partial: torch.Tensor) -> torch.Tensor:
    """The sum of the slices' partials, in slice order."""
    return partial[0] if partial.shape[0] == 1 else partial.sum(0)


def forward(x, weight, bias, order):
    """y (B, O) for x (B, n), weight (O, T), bias (O) or None."""
    x, weight = x.contiguous(), weight.contiguous()
    bias = bias.contiguous() if bias is not None else None
    if x.shape[0] == 0:
        return x.new_empty(0, weight.shape[0])
    rows, term_rows = _tables(x, order)
    run = functools.partial(_forward, x, weight, bias, rows, term_rows)
    return run(_tuned("forward", x, weight, run))


def _forward(x, weight, bias, rows, term_rows, config):
    (batch, n), (out, terms) = x.shape, weight.shape
    bb, bt, warps = config
    bo = _block_o(out)
    chunk, partial = _sliced(x, triton.cdiv(batch, bb) * triton.cdiv(out, bo), terms, bt, batch, out)
    _forward_kernel[(triton.cdiv(batch, bb), triton.cdiv(out, bo), partial.shape[0])](
        x, weight, bias if bias is not None else weight, rows, term_rows, partial, batch, n, out, terms, chunk,
        HAS_BIAS=bias is not None, ROW_WIDTH=rows.shape[1], PREFIX=rows.shape[1] - 3, BLOCK_B=bb, BLOCK_T=bt,
        BLOCK_O=bo, DOT=dot_precision(x), num_warps=warps)
    return _summed(partial)


def backward(grad, needs, x, weight, bias, order, kept=None):
    """(dx, dW, dbias, None): dW = grad^T . features(x), dx by the one-hot scatter kernel."""
    grad, x, weight = grad.contiguous(), x.contiguous(), weight.contiguous()
    rows, term_rows = _tables(x, order)
    dx = dweight = None
    if needs[0]:
        run = functools.partial(_backward_input, grad, x, weight, rows, term_rows)
        dx = run(_tuned("input_grad", x, weight, run)) if x.shape[0] else torch.zeros_like(x)
    if needs[1]:
        run = functools.partial(_backward_weight, grad, x, rows, term_rows, weight.shape[1])
        dweight = run(_tuned("weight_grad", x, weight, run)) if x.shape[0] else torch.zeros_like(weight)
    return dx, dweight, grad.sum(0), None


def _backward_weight(grad, x, rows, term_rows, terms, config):
    """dW (O, T) = grad^T . features(x)."""
    (batch, n), out = x.shape, grad.shape[1]
    bb, bt, warps = config
    bo = _block_o(out)
    chunk, partial = _sliced(x, triton.cdiv(terms, bt) * triton.cdiv(out, bo), batch, bb, out, terms)
    _backward_weight_kernel[(triton.cdiv(terms, bt), triton.cdiv(out, bo), partial.shape[0])](
        grad, x, rows, term_rows, partial, batch, n, out, terms, chunk, ROW_WIDTH=rows.shape[1],
        PREFIX=rows.shape[1] - 3, BLOCK_B=bb, BLOCK_T=bt, BLOCK_O=bo, DOT=dot_precision(x), num_warps=warps)
    return _summed(partial)


def _backward_input(grad, x, weight, rows, term_rows, config):
    """dx (B, n) for the cotangent grad (B, O)."""
    (batch, n), (out, terms) = x.shape, weight.shape
    bb, bt, warps = config
    chunk, partial = _sliced(x, triton.cdiv(batch, bb), terms, bt, batch, n)
    _backward_input_kernel[(triton.cdiv(batch, bb), partial.shape[0])](
        grad, x, weight, rows, term_rows, partial, batch, n, out, terms, chunk, ROW_WIDTH=rows.shape[1],
        PREFIX=rows.shape[1] - 3, BLOCK_B=bb, BLOCK_T=bt, BLOCK_O=_block_o(out),
        BLOCK_N=max(16, triton.next_power_of_2(n)), DOT=dot_precision(x), num_warps=warps)
    return _summed(partial)
