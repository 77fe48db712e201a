"""Empirical Green functions of network ensembles (Eq. 3.3-3.4) and their statistics across bags."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import distributed, ensemble
from .combos import ComboTable
from .network import NetworkLaw, as_points, check_count, kernel
from .wick import wick_expectations


@dataclass
class GreenFunctions:
    """G^(n) for every combo of points of order n <= max_n, per bag and summarised.

    Shapes: ``per_bag`` (n_bags, n_combos); every other tensor (n_combos,). ``table.combos[c]`` names combo c.

    * ``mean``: bar G_exp (average over bags); ``std``: spread across bags (ddof = 1); ``stderr`` = std / sqrt(n_bags)
    * ``gaussian``: G0 (Wick, Eq. 2.5 with the kernel K); ``delta`` = mean - G0 (Eq. 3.4)
    * ``m`` = delta / G0 (NaN where G0 = 0, i.e. odd n); ``background`` = std / |G0| (the bag-to-bag noise level)
    * ``zscore`` = delta / stderr (how many standard errors the deviation is)
    """

    points: torch.Tensor
    law: NetworkLaw
    n_nets: int
    table: ComboTable
    per_bag: torch.Tensor
    gaussian: torch.Tensor
    backend: str

    @property
    def n_bags(self) -> int:
        return self.per_bag.shape[0]

    @property
    def mean(self) -> torch.Tensor:
        return self.per_bag.mean(0)

    @property
    def std(self) -> torch.Tensor:
        return self.per_bag.std(0) if self.n_bags > 1 else torch.full_like(self.mean, math.nan)

    @property
    def stderr(self) -> torch.Tensor:
        return self.std / math.sqrt(self.n_bags)

    @property
    def delta(self) -> torch.Tensor:
        return self.mean - self.gaussian

    @property
    def m(self) -> torch.Tensor:
        return torch.where(self.gaussian != 0, self.delta / self.gaussian, torch.full_like(self.mean, math.nan))

    @property
    def m_per_bag(self) -> torch.Tensor:
        """(G_bag - G0) / G0 per bag, shape (n_bags, n_combos)."""
        return (self.per_bag - self.gaussian) / self.gaussian

    @property
    def background(self) -> torch.Tensor:
        return self.std / self.gaussian.abs()

    @property
    def zscore(self) -> torch.Tensor:
        return self.delta / self.stderr

    def order(self, n: int) -> torch.Tensor:
        """Indices of the combos of order n (use to slice any (.., n_combos) tensor)."""
        if not 1 <= n <= self.table.max_order:
            raise ValueError(f"n must be in [1, {self.table.max_order}], got {n}")
        return self.table.of_order(n)


def green_functions(points, max_n: int, width: int, n_bags: int, n_nets: int, sigma_w: float = 1.0,
                    sigma_b: float = 1.0, activation: str = "gauss", seed: int = 0, backend: str | None = None,
                    distributed_bags: bool | None = None) -> GreenFunctions:
    """G^(n)(x_{i_1}, ..., x_{i_n}) (Eq. 3.3) for all n <= max_n and all combos of points, in n_bags bags.

    points: (n_points, d_in) or 1-d; networks of Eq. 2.1-2.2 with ``width`` hidden units; bag b holds the networks
    b * n_nets .. (b + 1) * n_nets - 1 of the Philox stream of ``seed``. ``backend`` overrides
    ``physkernels.use_backend``. ``distributed_bags`` (default: when torch.distributed is initialised with more
    than one rank) shards the bags over ranks and gathers them; the result is the same as on one process.
    """
    pts = as_points(points)
    check_count("max_n", max_n, 1)
    law = NetworkLaw(width, float(sigma_w), float(sigma_b), activation, seed)
    check_count("n_bags", n_bags, 1)
    check_count("n_nets", n_nets, 2)
    table = ComboTable(pts.shape[0], max_n)
    chosen = ensemble.resolve_backend(pts.device, backend)
    rank, world_size = distributed.world()
    if distributed_bags is None:
        distributed_bags = world_size > 1
    if distributed_bags and world_size > 1:
        first, count = distributed.bag_range(n_bags, rank, world_size)
        local = ensemble.bag_sums(pts, law, first, count, n_nets, table, chosen)
        per_bag = distributed.gather_bags(local, n_bags, world_size)
    else:
        per_bag = ensemble.bag_sums(pts, law, 0, n_bags, n_nets, table, chosen)
    cov = kernel(pts, law.sigma_w, law.sigma_b, activation)
    return GreenFunctions(pts, law, n_nets, table, per_bag, wick_expectations(cov, table), chosen)


def ensemble_outputs(points, width: int, n_nets: int, sigma_w: float = 1.0, sigma_b: float = 1.0,
                     activation: str = "gauss", seed: int = 0, backend: str | None = None) -> torch.Tensor:
    """Outputs f_a(x_k) of networks a = 0 .. n_nets - 1 of the ensemble ``seed``: (n_nets, n_points) float64.

    Network a here is network a of bag 0 in :func:`green_functions` with the same seed and width.
    """
    pts = as_points(points)
    law = NetworkLaw(width, float(sigma_w), float(sigma_b), activation, seed)
    check_count("n_nets", n_nets, 2)
    return ensemble.outputs(pts, law, 0, n_nets, backend)
