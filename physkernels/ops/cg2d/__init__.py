"""CG2d: the fused second-order coarse-graining convolution of TaylorNet (Eq. 4 of the TaylorNet paper).

For x of shape (B, C_in, H, W), a kernel (kh, kw) with P = kh*kw patch positions p = i*kw + j, stride, zero
padding, dilation and groups, every input channel's patch is expanded to second (optionally third) order and the
per-channel polynomials are summed into each output channel::

    y[b,o,r] = bias[o] + sum_{c in o's group} ( sum_p         W1[o,c,p]       x_p
                                              + sum_{p<=q}    W2[o,c,(p,q)]   x_p x_q
                                              + sum_{p<=q<=s} W3[o,c,(p,q,s)] x_p x_q x_s )   (optional)

with ``x_p = x[b, c, ho*stride_h - pad_h + i*dil_h, wo*stride_w - pad_w + j*dil_w]`` (0 outside the image) and
r = (ho, wo). The output size follows nn.Conv2d's formula. Shapes (Cg = C_in / groups):

* ``weight``  (W1): ``(C_out, Cg, kh, kw)``, nn.Conv2d's layout;
* ``weight2`` (W2): ``(C_out, Cg, P(P+1)/2)``, pairs (p, q), p <= q, in ``torch.triu_indices(P, P)`` order;
* ``weight3`` (W3, optional): ``(C_out, Cg, P(P+1)(P+2)/6)``, triples p <= q <= s in lexicographic order
  (``itertools.combinations_with_replacement(range(P), 3)``);
* ``bias``: ``(C_out,)`` or None.

Per patch and channel there are ``F = P + P(P+1)/2 (+ P(P+1)(P+2)/6)`` features ("Taylor terms"), so the layer does
F/P times a convolution's multiply-adds (3.5x for 2x2 kernels at second order).

Modules: ``reference`` (:func:`reference_cg2d`, a direct sum over kernel offsets and pairs in plain torch, with
autograd for the gradients; :func:`unfold_cg2d`, the textbook unfold -> pairwise products -> matmul formulation the
benchmark compares with; validation), ``cpp_backend`` (fused OpenMP kernels, orders 2 and 3), ``triton_backend``
and ``cuda_backend`` (order 2; each declines what it cannot run through its ``supports`` hook, and ``auto`` moves
on to the next backend). The op is assembled by :class:`physkernels.ops._builder.KernelOp`.
"""

from __future__ import annotations

from typing import Optional

import torch

from .._builder import KernelOp
from .reference import (IntPair, int_pair, num_pairs, num_triples, out_shape, output_size, reference_cg2d,
                        unfold_cg2d, validate)

__all__ = ["cg2d", "reference_cg2d", "unfold_cg2d", "num_pairs", "num_triples", "output_size", "int_pair"]

op = KernelOp(
    "cg2d", "(Tensor x, Tensor weight, Tensor weight2, Tensor? weight3, Tensor? bias, int[] stride, int[] padding, "
            "int[] dilation, int groups) -> Tensor",
    title="CG2d", reference=reference_cg2d,
    fake=lambda x, weight, weight2, weight3, bias, stride, padding, dilation, groups: x.new_empty(
        out_shape(x, weight, stride, padding, dilation)),
    backends={name: f"{__name__}.{name}_backend" for name in ("cpp", "triton", "cuda")},
    auto_order={"cpu": ("cpp", "reference"), "cuda": ("cuda", "triton", "reference")})


def cg2d(x: torch.Tensor, weight: torch.Tensor, weight2: torch.Tensor, bias: Optional[torch.Tensor] = None,
         stride: IntPair = 1, padding: IntPair = 0, dilation: IntPair = 1, groups: int = 1, *,
         weight3: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Second-order (third with ``weight3``) coarse-graining convolution; see the module docstring for the math.

    Args:
        x: (B, C_in, H, W) (any B >= 0) or unbatched (C_in, H, W), float32 or float64; NCHW or channels_last.
        weight: W1, (C_out, C_in/groups, kh, kw).
        weight2: W2, (C_out, C_in/groups, P(P+1)/2), P = kh*kw, pairs in ``torch.triu_indices(P, P)`` order.
        bias: (C_out,) or None.
        stride, padding, dilation: int or pair, as nn.Conv2d (zero padding).
        groups: as nn.Conv2d.
        weight3: optional W3, (C_out, C_in/groups, P(P+1)(P+2)/6), triples p <= q <= s lexicographic.

    Returns:
        y: (B, C_out, Ho, Wo) with nn.Conv2d's output size, contiguous NCHW ((C_out, Ho, Wo) for unbatched x).
        Differentiable in every tensor, also twice: with ``create_graph=True`` the backward is the reference's
        VJP in plain torch (the fused backward kernels serve first-order gradients).

    Runs the custom op ``torch.ops.physkernels.cg2d`` under ``torch.compile``, export and fake-tensor tracing; in
    eager mode it calls the same kernels through a lighter ``autograd.Function``. Inside ``torch.func`` transforms
    and for an empty batch it evaluates :func:`reference_cg2d`.
    """
    if isinstance(x, torch.Tensor) and x.dim() == 3:
        return cg2d(x.unsqueeze(0), weight, weight2, bias, stride, padding, dilation, groups,
                    weight3=weight3).squeeze(0)
    x, weight, weight2, weight3, bias, stride, padding, dilation, groups = op.autocast(
        x, weight, weight2, weight3, bias, stride, padding, dilation, groups)
    stride, padding, dilation = validate(x, weight, weight2, weight3, bias, stride, padding, dilation, groups)
    return op(x, weight, weight2, weight3, bias, stride, padding, dilation, groups)
