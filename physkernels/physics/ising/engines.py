"""Monte Carlo engines behind :func:`sample`, keyed by (algorithm, backend), fastest backend first.

An engine is built as ``Engine(L, beta, n_chains, seed)`` and offers ``run(n_steps, record=False)`` (returning
per-step energy and ``|m|`` per spin of shape ``(n_chains, n_steps)`` when ``record``), ``configs()`` (int8
``(n_chains, L, L)``) and the classmethod ``available()``; Wolff engines add ``mean_cluster_size()`` and
``set_flips_per_step(k)``.
"""

from __future__ import annotations

import torch

from . import reference


class _Reference:
    """Adapter giving the numpy engines the engine interface."""

    impl: type

    def __init__(self, L, beta, n_chains, seed):
        self._engine = self.impl(L, beta, n_chains, seed)

    @classmethod
    def available(cls) -> bool:
        return True

    def run(self, n_steps, record=False):
        return self._engine.run(n_steps, record)

    def configs(self) -> torch.Tensor:
        return torch.from_numpy(self._engine.configs())

    def mean_cluster_size(self) -> float:
        return self._engine.flipped_sites / max(1, self._engine.flips)

    def set_flips_per_step(self, k: int) -> None:
        self._engine.flips_per_step = k


class ReferenceMetropolisEngine(_Reference):
    impl = reference.ReferenceMetropolis


class ReferenceSwendsenWangEngine(_Reference):
    impl = reference.ReferenceSwendsenWang


class ReferenceWolffEngine(_Reference):
    impl = reference.ReferenceWolff


ENGINES = {
    ("wolff", "reference"): ReferenceWolffEngine,
    ("metropolis", "reference"): ReferenceMetropolisEngine,
    ("swendsen_wang", "reference"): ReferenceSwendsenWangEngine,
}
