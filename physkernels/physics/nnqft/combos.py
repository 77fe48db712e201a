"""Inequivalent combinations of points (combinations with replacement) for every order n <= max_n.

Combos are listed by order, then in ``itertools.combinations_with_replacement`` order. Each combo of order n > 1
is its parent (the combo without its last point) times one more point, so a kernel builds every product with one
multiplication: ``prod[c] = prod[parent[c]] * f[point[c]]`` (``parent[c] = -1`` for order 1).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class ComboTable:
    """All combos of ``n_points`` points of orders 1 .. max_order.

    ``combos``: tuples of point indices; ``order``, ``parent``, ``point``: int32 tensors (n_combos,);
    ``members``: int32 (n_combos, max_order), point indices padded with -1 (the GPU kernels read it).
    """

    n_points: int
    max_order: int
    combos: tuple[tuple[int, ...], ...] = field(init=False)
    order: torch.Tensor = field(init=False)
    parent: torch.Tensor = field(init=False)
    point: torch.Tensor = field(init=False)
    members: torch.Tensor = field(init=False)
    index: dict = field(init=False, repr=False)

    def __post_init__(self):
        combos = [c for n in range(1, self.max_order + 1)
                  for c in itertools.combinations_with_replacement(range(self.n_points), n)]
        index = {c: i for i, c in enumerate(combos)}
        set_ = object.__setattr__
        set_(self, "combos", tuple(combos))
        set_(self, "index", index)
        set_(self, "order", torch.tensor([len(c) for c in combos], dtype=torch.int32))
        set_(self, "parent", torch.tensor([index[c[:-1]] if len(c) > 1 else -1 for c in combos], dtype=torch.int32))
        set_(self, "point", torch.tensor([c[-1] for c in combos], dtype=torch.int32))
        set_(self, "members", torch.tensor([list(c) + [-1] * (self.max_order - len(c)) for c in combos],
                                           dtype=torch.int32).reshape(len(combos), self.max_order))

    @property
    def n_combos(self) -> int:
        return len(self.combos)

    def of_order(self, n: int) -> torch.Tensor:
        """Indices (int64) of the combos of order n."""
        return torch.nonzero(self.order == n).flatten().long()

    def products(self, f: torch.Tensor) -> torch.Tensor:
        """prod_{i in combo} f[:, i] for every combo: (n_nets, n_points) -> (n_nets, n_combos)."""
        cols = []
        for c, (parent, point) in enumerate(zip(self.parent.tolist(), self.point.tolist())):
            cols.append(f[:, point] if parent < 0 else cols[parent] * f[:, point])
        return torch.stack(cols, dim=1)
