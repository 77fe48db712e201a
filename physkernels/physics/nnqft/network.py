"""The network law of Eq. 2.1-2.2, its activations, input validation and the infinite-width kernels.

A network of width N maps x in R^{d_in} to f(x) = b1 + sum_{j<N} W1_j g(W0_j . x + b0_j) with
W0 ~ N(0, sigma_w^2 / d_in), W1 ~ N(0, sigma_w^2 / N), b0, b1 ~ N(0, sigma_b^2) (Eq. 2.2).

Activations:

* ``"gauss"``: the Gauss-net of Eq. 3.1, g = exp(W0 x + b0) / exp(sigma_b^2 + sigma_w^2 |x|^2 / d_in), whose kernel
  is K = sigma_b^2 + sigma_w^2 exp(-sigma_w^2 |x - y|^2 / (2 d_in)) (Eq. 3.2), translation invariant.
* ``"erf"``: K = sigma_b^2 + sigma_w^2 (2/pi) arcsin(2 c_xy / sqrt((1 + 2 c_xx)(1 + 2 c_yy))) (Williams 1997),
* ``"relu"``: K = sigma_b^2 + sigma_w^2 sqrt(c_xx c_yy) (sin t + (pi - t) cos t) / (2 pi), cos t = c_xy / sqrt(c_xx c_yy)
  (Cho and Saul 2009), where c_xy = sigma_b^2 + sigma_w^2 x.y / d_in is the covariance of the pre-activations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

ACTIVATIONS = ("gauss", "erf", "relu")
ACTIVATION_CODES = {name: code for code, name in enumerate(ACTIVATIONS)}  # the C++/CUDA/Triton enum
MAX_SEED = 2**64 - 1


def as_points(points) -> torch.Tensor:
    """Points as a float64 CPU-or-device tensor of shape (n_points, d_in); a 1-d input means d_in = 1."""
    if not isinstance(points, torch.Tensor):
        try:
            points = torch.as_tensor(points, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"points must be a tensor or a nested sequence of numbers, got {type(points).__name__}"
                            ) from exc
    if not (points.is_floating_point() or points.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"points must hold real numbers, got dtype {points.dtype}")
    if points.dim() == 1:
        points = points[:, None]
    if points.dim() != 2 or points.shape[0] < 1 or points.shape[1] < 1:
        raise ValueError(f"points must have shape (n_points, d_in) with n_points, d_in >= 1 (or be 1-d), "
                         f"got shape {tuple(points.shape)}")
    points = points.to(torch.float64).contiguous()
    if not torch.isfinite(points).all():
        raise ValueError("points must be finite")
    return points


@dataclass(frozen=True)
class NetworkLaw:
    """The parameter law of Eq. 2.2 for one width, plus the activation and the RNG seed."""

    width: int
    sigma_w: float = 1.0
    sigma_b: float = 1.0
    activation: str = "gauss"
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.width, bool) or not isinstance(self.width, int):
            raise TypeError(f"width must be an int, got {type(self.width).__name__}")
        if not 1 <= self.width < 2**32 - 1:
            raise ValueError(f"width must be >= 1 (and < 2^32 - 1), got {self.width}")
        for name in ("sigma_w", "sigma_b"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be finite and >= 0, got {value}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be an int in [0, 2^64), got {self.seed!r}")

    @property
    def activation_code(self) -> int:
        return ACTIVATION_CODES[self.activation]


def check_count(name: str, value, minimum: int) -> int:
    """``value`` as an int >= ``minimum``, or a clear error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def pre_activation_covariance(x: torch.Tensor, y: torch.Tensor, sigma_w: float, sigma_b: float) -> torch.Tensor:
    """c(x, y) = sigma_b^2 + sigma_w^2 x.y / d_in, shape (len(x), len(y))."""
    return sigma_b**2 + sigma_w**2 * (x @ y.T) / x.shape[1]


def kernel(points, sigma_w: float = 1.0, sigma_b: float = 1.0, activation: str = "gauss",
           other=None) -> torch.Tensor:
    """The infinite-width (Gaussian-process) kernel K(x_i, y_j), shape (n_points, n_other), float64.

    ``other`` defaults to ``points``. See the module docstring for the three closed forms.
    """
    NetworkLaw(1, float(sigma_w), float(sigma_b), activation)  # validates sigma and activation
    x = as_points(points)
    y = x if other is None else as_points(other)
    if y.shape[1] != x.shape[1]:
        raise ValueError(f"other must have d_in = {x.shape[1]} columns, got {y.shape[1]}")
    d_in = x.shape[1]
    if activation == "gauss":
        return sigma_b**2 + sigma_w**2 * torch.exp(-sigma_w**2 * torch.cdist(x, y) ** 2 / (2 * d_in))
    cxy = pre_activation_covariance(x, y, sigma_w, sigma_b)
    cxx = (sigma_b**2 + sigma_w**2 * (x * x).sum(1) / d_in)[:, None]
    cyy = (sigma_b**2 + sigma_w**2 * (y * y).sum(1) / d_in)[None, :]
    if activation == "erf":
        arg = 2 * cxy / torch.sqrt((1 + 2 * cxx) * (1 + 2 * cyy))
        return sigma_b**2 + sigma_w**2 * (2 / math.pi) * torch.asin(arg.clamp(-1, 1))
    norm = torch.sqrt(cxx * cyy)
    safe = torch.where(norm > 0, norm, torch.ones_like(norm))
    theta = torch.acos((cxy / safe).clamp(-1, 1))
    arc = norm * (torch.sin(theta) + (math.pi - theta) * torch.cos(theta)) / (2 * math.pi)
    return sigma_b**2 + sigma_w**2 * arc
