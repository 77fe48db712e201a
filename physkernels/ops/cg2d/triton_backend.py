"""CG2d in Triton (order 2): fused forward, weight gradient and input gradient; no im2col, no atomics. Runs on
CUDA tensors, and on CPU tensors under ``TRITON_INTERPRET=1``.

Feature table: feature f of a channel's patch is ``x_{fp[f]} * (x_{fq[f]} if fq[f] >= 0 else 1)`` (f < F), i.e. the
P values then the pairs p <= q in ``torch.triu_indices`` order, padded with zero features to FP (a power of two
>= 16, the smallest ``tl.dot`` operand). Every kernel gathers the feature tile [FP, BLOCK] straight from x.

* forward: program (tile of flattened (b, ho, wo) positions, group x block of outputs):
  ``acc[o, r] += W[o, c, :] @ feat_c[:, r]`` over the group's channels c.
* weight gradient: program (group x channel, block of outputs, slice of positions):
  ``dW[o, c, :] = sum_r gy[o, r] feat_c[:, r]^T`` over the slice's positions; the slices' partial sums are added
  in a fixed order (deterministic; :func:`physkernels.ops._triton_launch.reduction_splits` sets how many).
* input gradient, gather form (deterministic, no atomics): program (image x channel, block of input pixels). For
  each kernel offset p the pixel is x_p of at most one output position r_p; there
  ``dx += sum_f (sum_o W[o, c, f] gy[o, r_p]) * d feat_f / d x_p``.
The bias gradient is ``grad.sum((0, 2, 3))``. ``tl.dot`` runs in TF32 for float32 where torch's matmuls may
(:func:`~physkernels.ops._triton_launch.dot_precision`). Tile sizes and warps are chosen per problem by measurement
on a GPU (:mod:`physkernels._autotune`; the first candidate wherever nothing is measured).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ... import _autotune
from ..._kernel_args import device_constant
from .._triton_launch import dot_precision, reduction_splits
from .reference import output_size


def _feature_table(patch: int, device) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(fp, fq, F, FP): first and second factor of every feature (-1: none; -2: padding feature), on ``device``
    (copied there once)."""
    count = patch + patch * (patch + 1) // 2
    padded = max(16, triton.next_power_of_2(count))

    def factors(which: int) -> torch.Tensor:
        pi, qi = torch.triu_indices(patch, patch)
        first = torch.cat([torch.arange(patch), pi, torch.zeros(padded - count, dtype=torch.long)])
        second = torch.cat([torch.full((patch,), -1), qi, torch.full((padded - count,), -2)])
        return (first if which == 0 else second).to(torch.int32)

    fp = device_constant(("cg2d_fp", patch), device, lambda: factors(0))
    fq = device_constant(("cg2d_fq", patch), device, lambda: factors(1))
    return fp, fq, count, padded


@triton.jit
def _gather_features(x_ptr, b, c, oh, ow, valid_r, fp, fq, sxb, sxc, sxh, sxw, H, W,
                     KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, PH: tl.constexpr, PW: tl.constexpr,
                     DH: tl.constexpr, DW: tl.constexpr):
    """[FP, BLOCK] feature tile of channel c at output positions (b, oh, ow) (zero where invalid)."""
    base = x_ptr + b[None, :] * sxb + c * sxc
    hi = oh[None, :] * SH - PH + (fp[:, None] // KW) * DH
    wi = ow[None, :] * SW - PW + (fp[:, None] % KW) * DW
    ok = valid_r[None, :] & (hi >= 0) & (hi < H) & (wi >= 0) & (wi < W) & (fq[:, None] >= -1)
    first = tl.load(base + hi * sxh + wi * sxw, mask=ok, other=0.0)
    q = tl.maximum(fq, 0)
    hq = oh[None, :] * SH - PH + (q[:, None] // KW) * DH
    wq = ow[None, :] * SW - PW + (q[:, None] % KW) * DW
    okq = valid_r[None, :] & (hq >= 0) & (hq < H) & (wq >= 0) & (wq < W) & (fq[:, None] >= 0)
    second = tl.load(base + hq * sxh + wq * sxw, mask=okq, other=0.0)
    return first * tl.where(fq[:, None] >= 0, second, 1.0)


@triton.jit
def _forward_kernel(x_ptr, w_ptr, bias_ptr, y_ptr, fp_ptr, fq_ptr,
                    N, R, WO, CG, OG, C_OUT, F, H, W, sxb, sxc, sxh, sxw,
                    KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, PH: tl.constexpr, PW: tl.constexpr,
                    DH: tl.constexpr, DW: tl.constexpr, HAS_BIAS: tl.constexpr, FP: tl.constexpr,
                    BLOCK_R: tl.constexpr, BLOCK_O: tl.constexpr, DOT: tl.constexpr):
    pid_r = tl.program_id(0)
    o_blocks = tl.cdiv(OG, BLOCK_O)
    grp = tl.program_id(1) // o_blocks
    o = (tl.program_id(1) % o_blocks) * BLOCK_O + tl.arange(0, BLOCK_O)
    n = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    valid_r = n < N
    b = n // R
    pos = n % R
    oh = pos // WO
    ow = pos % WO
    f = tl.arange(0, FP)
    fp = tl.load(fp_ptr + f)
    fq = tl.load(fq_ptr + f)
    valid_o = o < OG
    out = grp * OG + o
    acc = tl.zeros((BLOCK_O, BLOCK_R), dtype=y_ptr.dtype.element_ty)
    for c in range(0, CG):
        feat = _gather_features(x_ptr, b, grp * CG + c, oh, ow, valid_r, fp, fq, sxb, sxc, sxh, sxw, H, W,
                                KW, SH, SW, PH, PW, DH, DW)
        w = tl.load(w_ptr + (out[:, None] * CG + c) * F + f[None, :], mask=valid_o[:, None] & (f[None, :] < F),
                    other=0.0)
        acc += tl.dot(w, feat, input_precision=DOT)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + out, mask=valid_o, other=0.0)[:, None]
    dst = y_ptr + (b[None, :] * C_OUT + out[:, None]) * R + pos[None, :]
    tl.store(dst, acc, mask=valid_o[:, None] & valid_r[None, :])


@triton.jit
def _weight_grad_kernel(g_ptr, x_ptr, dw_ptr, fp_ptr, fq_ptr,
                        N, R, WO, CG, OG, C_OUT, F, H, W, sxb, sxc, sxh, sxw, CHUNK,
                        KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, PH: tl.constexpr, PW: tl.constexpr,
                        DH: tl.constexpr, DW: tl.constexpr, FP: tl.constexpr,
                        BLOCK_R: tl.constexpr, BLOCK_O: tl.constexpr, DOT: tl.constexpr):
    """Partial dW of positions [split * CHUNK, (split + 1) * CHUNK) into slice ``split`` of dw_ptr."""
    grp = tl.program_id(0) // CG
    c = tl.program_id(0) % CG
    o = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
    split = tl.program_id(2)
    valid_o = o < OG
    out = grp * OG + o
    f = tl.arange(0, FP)
    fp = tl.load(fp_ptr + f)
    fq = tl.load(fq_ptr + f)
    acc = tl.zeros((BLOCK_O, FP), dtype=dw_ptr.dtype.element_ty)
    for n0 in range(split * CHUNK, tl.minimum(N, (split + 1) * CHUNK), BLOCK_R):
        n = n0 + tl.arange(0, BLOCK_R)
        valid_r = n < N
        b = n // R
        pos = n % R
        feat = _gather_features(x_ptr, b, grp * CG + c, pos // WO, pos % WO, valid_r, fp, fq, sxb, sxc, sxh, sxw,
                                H, W, KW, SH, SW, PH, PW, DH, DW)
        gy = tl.load(g_ptr + (b[None, :] * C_OUT + out[:, None]) * R + pos[None, :],
                     mask=valid_o[:, None] & valid_r[None, :], other=0.0)
        acc += tl.dot(gy, tl.trans(feat), input_precision=DOT)
    dst = dw_ptr + split * C_OUT * CG * F + (out[:, None] * CG + c) * F + f[None, :]
    tl.store(dst, acc, mask=valid_o[:, None] & (f[None, :] < F))


@triton.jit
def _input_grad_kernel(g_ptr, x_ptr, w_ptr, dx_ptr, fp_ptr, fq_ptr,
                       HO, WO, C_IN, CG, OG, C_OUT, F, H, W, sxb, sxc, sxh, sxw,
                       KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, PH: tl.constexpr,
                       PW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr, FP: tl.constexpr,
                       BLOCK_X: tl.constexpr, BLOCK_O: tl.constexpr, DOT: tl.constexpr):
    b = tl.program_id(1) // C_IN
    ch = tl.program_id(1) % C_IN
    grp = ch // CG
    pix = tl.program_id(0) * BLOCK_X + tl.arange(0, BLOCK_X)
    valid_x = pix < H * W
    hi = pix // W
    wi = pix % W
    f = tl.arange(0, FP)
    fp = tl.load(fp_ptr + f)
    fq = tl.load(fq_ptr + f)
    R = HO * WO
    bb = tl.zeros((BLOCK_X,), dtype=tl.int32) + b
    dx = tl.zeros((BLOCK_X,), dtype=dx_ptr.dtype.element_ty)
    for p in tl.static_range(KH * KW):
        th = hi + PH - (p // KW) * DH
        tw = wi + PW - (p % KW) * DW
        oh = th // SH
        ow = tw // SW
        hit = valid_x & (th >= 0) & (tw >= 0) & (th % SH == 0) & (tw % SW == 0) & (oh < HO) & (ow < WO)
        oh = tl.where(hit, oh, 0)
        ow = tl.where(hit, ow, 0)
        r = oh * WO + ow
        # d feat_f / d x_p at position r: 1 for the linear term p; x_q for a pair (p, q); x_a for (a, p).
        single = tl.full((FP,), -1, dtype=tl.int32)  # "no second factor": gather x_{index[f]} alone
        xa = _gather_features(x_ptr, bb, ch, oh, ow, hit, fp, single, sxb, sxc, sxh, sxw, H, W,
                              KW, SH, SW, PH, PW, DH, DW)  # x_{fp[f]}
        xb = _gather_features(x_ptr, bb, ch, oh, ow, hit, tl.maximum(fq, 0), single, sxb, sxc, sxh, sxw, H, W,
                              KW, SH, SW, PH, PW, DH, DW)  # x_{fq[f]}
        linear = (fq[:, None] == -1) & (fp[:, None] == p)
        coef = tl.where(linear, 1.0, 0.0)
        coef += tl.where((fq[:, None] >= 0) & (fp[:, None] == p), xb, 0.0)
        coef += tl.where((fq[:, None] >= 0) & (fq[:, None] == p), xa, 0.0)
        gsum = tl.zeros((FP, BLOCK_X), dtype=dx_ptr.dtype.element_ty)
        for o0 in range(0, OG, BLOCK_O):
            o = o0 + tl.arange(0, BLOCK_O)
            valid_o = o < OG
            out = grp * OG + o
            wt = tl.load(w_ptr + (out[None, :] * CG + ch % CG) * F + f[:, None],
                         mask=valid_o[None, :] & (f[:, None] < F), other=0.0)               # [FP, BLOCK_O]
            gy = tl.load(g_ptr + (b * C_OUT + out[:, None]) * R + r[None, :],
                         mask=valid_o[:, None] & hit[None, :], other=0.0)                   # [BLOCK_O, BLOCK_X]
            gsum += tl.dot(wt, gy, input_precision=DOT)
        dx += tl.sum(gsum * coef, axis=0)
    tl.store(dx_ptr + (b * C_IN + ch) * H * W + pix, dx, mask=valid_x)


def _geometry(x, weight, stride, padding, dilation):
    _, _, kh, kw = weight.shape
    ho = output_size(x.shape[2], kh, stride[0], padding[0], dilation[0])
    wo = output_size(x.shape[3], kw, stride[1], padding[1], dilation[1])
    return ho, wo, dict(KW=kw, SH=stride[0], SW=stride[1], PH=padding[0], PW=padding[1], DH=dilation[0],
                        DW=dilation[1])


def _packed(weight, weight2):
    c_out, cg = weight.shape[:2]
    return torch.cat([weight.reshape(c_out, cg, -1), weight2], dim=2).contiguous()


# (block of positions or pixels, block of outputs, warps): the first is the default (and the interpreter's)
_GPU_CONFIGS = ((64, 32, 4), (64, 64, 4), (128, 64, 8), (32, 64, 4), (128, 32, 4))
_INTERPRETED_CONFIGS = ((16, 16, 4),)


def _configs(x: torch.Tensor, og: int) -> tuple[tuple[int, int, int], ...]:
    """Candidate (block, block of outputs, warps) of a kernel: output blocks past ``og`` only where they fit it."""
    if not x.is_cuda:
        return _INTERPRETED_CONFIGS
    fitting = tuple(c for c in _GPU_CONFIGS if c[1] <= max(16, triton.next_power_of_2(og)))
    return fitting or ((64, 16, 4),)


def _tuned(kind: str, x: torch.Tensor, weight: torch.Tensor, geometry: tuple, launch) -> tuple[int, int, int]:
    """The config of kernel ``kind`` for this problem: measured over :func:`_configs` on a GPU
    (:func:`physkernels._autotune.choose`; ``launch(config)`` runs the kernel into scratch outputs)."""
    og = weight.shape[0] // geometry[-1]
    options = _configs(x, og)
    key = ("cg2d_triton", kind, tuple(x.shape), tuple(weight.shape), geometry, x.dtype, x.device, dot_precision(x))
    found = _autotune.remembered(key)
    return found if found is not None else _autotune.choose(key, x.device, lambda: options[0], lambda: options,
                                                             launch)


def supports(x, weight, weight2, weight3, bias, stride, padding, dilation, groups) -> str | None:
    return "the triton kernels implement order 2 only (weight3 was given)" if weight3 is not None else None


def forward(x, weight, weight2, weight3, bias, stride, padding, dilation, groups):
    """y = cg2d(x, weight, weight2, bias) (order 2) with the Triton forward kernel."""
    b, c_in, h, w = x.shape
    c_out, cg, kh, kw = weight.shape
    og = c_out // groups
    ho, wo, geo = _geometry(x, weight, stride, padding, dilation)
    fp, fq, count, padded = _feature_table(kh * kw, x.device)
    packed = _packed(weight, weight2)
    y = x.new_empty(b, c_out, ho, wo)
    n = b * ho * wo
    bias_arg = bias.contiguous() if bias is not None else packed  # the kernel reads bias with unit stride

    def launch(config, out=y):
        block_r, block_o, warps = config
        grid = (triton.cdiv(n, block_r), groups * triton.cdiv(og, block_o))
        _forward_kernel[grid](x, packed, bias_arg, out, fp, fq, n, ho * wo, wo, cg, og, c_out,
                              count, h, w, *x.stride(), HAS_BIAS=bias is not None, FP=padded, BLOCK_R=block_r,
                              BLOCK_O=block_o, DOT=dot_precision(x), num_warps=warps, **geo)

    launch(_tuned("forward", x, weight, (tuple(stride), tuple(padding), tuple(dilation), groups),
                  lambda config: launch(config, torch.empty_like(y))))
    return y


def _weight_grad(grad, x, packed, fp, fq, count, padded, ho, wo, geo, groups, config):
    """dW packed (C_out, C_in/groups, F): each program's positions split into slices, the partials summed."""
    block_r, block_o, warps = config
    n = x.shape[0] * ho * wo
    c_out, cg = packed.shape[:2]
    og = c_out // groups
    programs = groups * cg * triton.cdiv(og, block_o)
    splits = reduction_splits(programs, triton.cdiv(n, block_r), x.device)
    chunk = triton.cdiv(triton.cdiv(n, splits), block_r) * block_r
    splits = triton.cdiv(n, chunk)
    partial = packed.new_empty((splits, *packed.shape))
    _weight_grad_kernel[(groups * cg, triton.cdiv(og, block_o), splits)](
        grad, x, partial, fp, fq, n, ho * wo, wo, cg, og, c_out, count, x.shape[2], x.shape[3], *x.stride(), chunk,
        FP=padded, BLOCK_R=block_r, BLOCK_O=block_o, DOT=dot_precision(x), num_warps=warps, **geo)
    return partial[0] if splits == 1 else partial.sum(0)


def _input_grad(grad, x, packed, fp, fq, count, padded, ho, wo, geo, groups, kh, config):
    block_x, block_o, warps = config
    b, c_in, h, w = x.shape
    c_out, cg = packed.shape[:2]
    dx = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    _input_grad_kernel[(triton.cdiv(h * w, block_x), b * c_in)](
        grad, x, packed, dx, fp, fq, ho, wo, c_in, cg, c_out // groups, c_out, count, h, w, *x.stride(), KH=kh,
        FP=padded, BLOCK_X=block_x, BLOCK_O=block_o, DOT=dot_precision(x), num_warps=warps, **geo)
    return dx


def backward(grad, needs, x, weight, weight2, weight3, bias, stride, padding, dilation, groups, kept=None):
    """(dx or None, dweight, dweight2, None, dbias or None, ...) with the Triton backward kernels."""
    kh, kw = weight.shape[2:]
    ho, wo, geo = _geometry(x, weight, stride, padding, dilation)
    fp, fq, count, padded = _feature_table(kh * kw, x.device)
    packed = _packed(weight, weight2)
    grad = grad.contiguous()
    problem = (tuple(stride), tuple(padding), tuple(dilation), groups)
    tables = (fp, fq, count, padded, ho, wo, geo, groups)
    dpacked = _weight_grad(grad, x, packed, *tables, _tuned(
        "weight_grad", x, weight, problem, lambda config: _weight_grad(grad, x, packed, *tables, config)))
    dx = None
    if needs[0]:
        dx = _input_grad(grad, x, packed, *tables, kh, _tuned(
            "input_grad", x, weight, problem, lambda config: _input_grad(grad, x, packed, *tables, kh, config)))
    dw1, dw2 = torch.split(dpacked, [kh * kw, dpacked.shape[2] - kh * kw], dim=2)
    dbias = grad.sum((0, 2, 3)) if bias is not None else None
    # copies, not views: the two gradients must not share dpacked's storage (custom ops may not return aliases)
    return (dx, dw1.reshape(weight.shape).clone(memory_format=torch.contiguous_format),
            dw2.clone(memory_format=torch.contiguous_format), None, dbias, None, None, None, None)
