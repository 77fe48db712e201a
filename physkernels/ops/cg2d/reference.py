"""CG2d's math in plain torch: the direct-sum reference every backend is checked against (:func:`reference_cg2d`),
the unfold formulation the benchmark compares with (:func:`unfold_cg2d`), term counts, output geometry and
argument validation. The formula and weight layouts are in :mod:`physkernels.ops.cg2d`."""

from __future__ import annotations

import itertools
from typing import Sequence, Union

import torch
import torch.nn.functional as F

from .._builder import OP_DTYPES

IntPair = Union[int, Sequence[int]]


def num_pairs(p: int) -> int:
    """Number of second-order terms x_p x_q (p <= q) of a P-position patch: P(P+1)/2."""
    return p * (p + 1) // 2


def num_triples(p: int) -> int:
    """Number of third-order terms x_p x_q x_s (p <= q <= s) of a P-position patch: P(P+1)(P+2)/6."""
    return p * (p + 1) * (p + 2) // 6


def _pairs(p: int) -> list[tuple[int, int]]:
    return list(itertools.combinations_with_replacement(range(p), 2))


def _triples(p: int) -> list[tuple[int, int, int]]:
    return list(itertools.combinations_with_replacement(range(p), 3))


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """nn.Conv2d's output length along one axis."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


# ----------------------------------------------------------------------------------------------------------------
# Reference math (plain torch). Both are differentiable by autograd; the first is the independent reference every
# backend is tested against, the second is the unfold baseline of the benchmark.
# ----------------------------------------------------------------------------------------------------------------
def _shifted_patches(x, kh, kw, stride, padding, dilation):
    """List of P tensors (B, C, Ho, Wo): x_p for every kernel offset p = i*kw + j (zero padding)."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = F.pad(x, (pw, pw, ph, ph))
    ho = output_size(x.shape[2], kh, sh, ph, dh)
    wo = output_size(x.shape[3], kw, sw, pw, dw)
    return [xp[:, :, i * dh: i * dh + (ho - 1) * sh + 1: sh, j * dw: j * dw + (wo - 1) * sw + 1: sw]
            for i in range(kh) for j in range(kw)]


def reference_cg2d(x, weight, weight2, weight3=None, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                   groups=1):
    """Direct evaluation of the CG2d sum: one term per kernel offset, pair and triple (slow, obviously right)."""
    b, c_in = x.shape[:2]
    c_out, cg, kh, kw = weight.shape
    og = c_out // groups
    patches = _shifted_patches(x, kh, kw, int_pair(stride), int_pair(padding), int_pair(dilation))
    ho, wo = patches[0].shape[2:]

    def grouped(t):  # (B, C_in, Ho, Wo) -> (B, G, Cg, Ho, Wo)
        return t.reshape(b, groups, cg, ho, wo)

    def mix(term, w):  # sum over the group's channels: w (C_out, Cg) -> (B, C_out, Ho, Wo)
        return torch.einsum("bgchw,goc->bgohw", grouped(term), w.reshape(groups, og, cg)).reshape(b, c_out, ho, wo)

    w1 = weight.reshape(c_out, cg, kh * kw)
    y = sum(mix(patches[p], w1[:, :, p]) for p in range(kh * kw))
    for k, (p, q) in enumerate(_pairs(kh * kw)):
        y = y + mix(patches[p] * patches[q], weight2[:, :, k])
    if weight3 is not None:
        for k, (p, q, s) in enumerate(_triples(kh * kw)):
            y = y + mix(patches[p] * patches[q] * patches[s], weight3[:, :, k])
    if bias is not None:
        y = y + bias.reshape(1, c_out, 1, 1)
    return y


def unfold_cg2d(x, weight, weight2, weight3=None, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                groups=1):
    """Unfold -> pairwise (and triple) products -> one matmul per group: the memory-hungry textbook formulation."""
    b, c_in, h, w = x.shape
    c_out, cg, kh, kw = weight.shape
    P, og = kh * kw, c_out // groups
    stride, padding, dilation = int_pair(stride), int_pair(padding), int_pair(dilation)
    ho = output_size(h, kh, stride[0], padding[0], dilation[0])
    wo = output_size(w, kw, stride[1], padding[1], dilation[1])
    cols = F.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride).reshape(b, c_in, P, ho * wo)
    pi, qi = torch.triu_indices(P, P, device=x.device)
    feats = [cols, cols[:, :, pi] * cols[:, :, qi]]
    weights = [weight.reshape(c_out, cg, P), weight2]
    if weight3 is not None:
        t = torch.tensor(_triples(P), device=x.device).T
        feats.append(cols[:, :, t[0]] * cols[:, :, t[1]] * cols[:, :, t[2]])
        weights.append(weight3)
    feats = torch.cat(feats, dim=2).reshape(b, groups, -1, ho * wo)       # (B, G, Cg*F, L)
    wcat = torch.cat(weights, dim=2).reshape(groups, og, -1)             # (G, Og, Cg*F)
    y = torch.matmul(wcat, feats).reshape(b, c_out, ho, wo)
    return y if bias is None else y + bias.reshape(1, c_out, 1, 1)


# ----------------------------------------------------------------------------------------------------------------
# Argument checking
# ----------------------------------------------------------------------------------------------------------------
def int_pair(value, name: str = "argument") -> tuple[int, int]:
    """``(v, v)`` for an int, the pair for a pair of ints (nn.Conv2d's convention); TypeError naming ``name``."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                  for v in value):
        return (int(value[0]), int(value[1]))
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def _check_tensor(name, t, x, shape):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype != x.dtype:
        raise TypeError(f"{name} has dtype {t.dtype} but x has dtype {x.dtype}; they must match")
    if t.device != x.device:
        raise ValueError(f"{name} is on {t.device} but x is on {x.device}; they must match")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")


def validate(x, weight, weight2, weight3, bias, stride, padding, dilation, groups):
    """Check every argument; return normalised (stride, padding, dilation) pairs."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in OP_DTYPES:
        raise TypeError(f"x must be float16, bfloat16, float32 or float64, got dtype {x.dtype}")
    if x.dim() != 4:
        raise ValueError(f"x must be (B, C_in, H, W) or unbatched (C_in, H, W), got shape {tuple(x.shape)}")
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    if weight.dim() != 4:
        raise ValueError(f"weight must be 4-d (C_out, C_in/groups, kh, kw), got shape {tuple(weight.shape)}")
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    stride, padding = int_pair(stride, "stride"), int_pair(padding, "padding")
    dilation = int_pair(dilation, "dilation")
    if min(stride) < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if min(dilation) < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation}")
    if min(padding) < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    c_out, cg, kh, kw = weight.shape
    if min(c_out, cg, kh, kw) < 1:
        raise ValueError(f"weight has an empty dimension: shape {tuple(weight.shape)}")
    c_in = x.shape[1]
    if c_in % groups or c_out % groups:
        raise ValueError(f"groups={groups} must divide both x's channels ({c_in}) and weight's C_out ({c_out})")
    if cg * groups != c_in:
        raise ValueError(f"x has {c_in} channels but weight expects in_channels = {cg} * groups {groups} = "
                         f"{cg * groups}")
    for axis, (size, k, p, d) in enumerate(zip(x.shape[2:], (kh, kw), padding, dilation)):
        span = d * (k - 1) + 1
        if span > size + 2 * p:
            raise ValueError(f"kernel_size {(kh, kw)} with dilation {dilation} spans {span} along spatial axis "
                             f"{axis} but the padded input x is only {size + 2 * p} long")
    _check_tensor("weight", weight, x, weight.shape)
    P = kh * kw
    _check_tensor("weight2", weight2, x, (c_out, cg, num_pairs(P)))
    if weight3 is not None:
        _check_tensor("weight3", weight3, x, (c_out, cg, num_triples(P)))
    if bias is not None:
        _check_tensor("bias", bias, x, (c_out,))
    return stride, padding, dilation


def out_shape(x, weight, stride, padding, dilation):
    c_out, _, kh, kw = weight.shape
    return (x.shape[0], c_out, output_size(x.shape[2], kh, stride[0], padding[0], dilation[0]),
            output_size(x.shape[3], kw, stride[1], padding[1], dilation[1]))


def kernel_geometry(x, weight, stride, padding, dilation, groups, order):
    """The integer arguments every compiled CG2d kernel takes, in its order."""
    b, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    return [b, c_in, h, w, *x.stride(), c_out, kh, kw, *stride, *padding, *dilation, groups, order]

