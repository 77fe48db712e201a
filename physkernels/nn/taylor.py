"""``TaylorLinear``: a linear layer on all monomials of its input up to a given order (TaylorNet paper, Eq. 3)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..ops.taylor_linear import taylor_linear
from ..taylor import check_order, monomial_count


class TaylorLinear(nn.Module):
    """y = bias + W . monomials(x), monomials of degree 1..order in the in_features inputs (fused kernels).

    ``weight`` has shape (out_features, n_terms), n_terms = C(in_features + order, order) - 1, columns in
    ``physkernels.taylor.monomials(in_features, order)`` order; input (..., in_features), output (..., out_features).

    :meth:`prune` keeps only the largest-|W| coefficients. Pruned coefficients are held at zero by a mask buffer:
    the forward uses ``weight * weight_mask`` (so no gradient and no stale optimizer state, momentum, Adam moments
    or weight decay, can bring them back into the output), and in training the stored parameter is re-zeroed
    under the mask before each forward, so ``weight`` itself reads zero there too.
    """

    def __init__(self, in_features: int, out_features: int, order: int, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.order = check_order(order)
        self.in_features, self.out_features = in_features, out_features
        self.n_terms = monomial_count(in_features, self.order)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_features, self.n_terms, **factory))
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.register_buffer("weight_mask", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """U(-1/sqrt(n_terms), 1/sqrt(n_terms)) for weight and bias (as nn.Linear with fan_in = n_terms)."""
        bound = 1.0 / math.sqrt(self.n_terms)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)
        self.weight_mask = None

    @torch.no_grad()
    def prune(self, fraction: float) -> torch.Tensor:
        """Keep the ``fraction`` (0 < fraction <= 1) of all weight coefficients with the largest |W|; zero the rest.

        Pruned coefficients stay zero during training (see the class docstring). Pruning again ranks the current
        (masked) weights, so ``prune(0.5); prune(0.3)`` keeps 30% of all coefficients. Returns the mask.
        """
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise ValueError(f"fraction must be a number in (0, 1] (the share of coefficients kept), got {fraction!r}")
        keep = max(1, round(fraction * self.weight.numel()))
        magnitude = self.effective_weight().abs().reshape(-1)
        mask = torch.zeros(self.weight.numel(), dtype=torch.bool, device=self.weight.device)
        mask[torch.topk(magnitude, keep, sorted=False).indices] = True
        self.weight_mask = mask.reshape(self.weight.shape)
        self.weight.mul_(self.weight_mask)
        return self.weight_mask

    @property
    def kept_fraction(self) -> float:
        """Share of weight coefficients not pruned (1.0 when never pruned)."""
        return 1.0 if self.weight_mask is None else self.weight_mask.float().mean().item()

    def effective_weight(self) -> torch.Tensor:
        """The weight the forward uses: ``weight * weight_mask`` after pruning, else ``weight``."""
        return self.weight if self.weight_mask is None else self.weight * self.weight_mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[-1] != self.in_features:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x's last dimension must be in_features={self.in_features}, got {shape}")
        if self.weight_mask is not None and self.training and not torch.compiler.is_compiling():
            with torch.no_grad():
                self.weight.mul_(self.weight_mask)
        return taylor_linear(x, self.effective_weight(), self.bias, self.order)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A pruned layer's state carries its mask; make room for it in an unpruned layer before loading.
        mask = state_dict.get(prefix + "weight_mask")
        if mask is not None and self.weight_mask is None:
            self.weight_mask = torch.zeros_like(mask, device=self.weight.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, order={self.order}, "
                f"n_terms={self.n_terms}, bias={self.bias is not None}, kept_fraction={self.kept_fraction:.3g}")
