"""Plain numpy Monte Carlo engines: the independent reference the compiled kernels are checked against.

Each engine holds ``n_chains`` independent ``L x L`` periodic lattices at one inverse temperature and advances
them by ``run(n_steps)``; one step is one full sweep (Metropolis: both checkerboard colours; Swendsen-Wang: one
cluster decomposition of every lattice). Randomness comes from ``numpy.random.Generator(Philox(seed))``.
"""

from __future__ import annotations

import math

import numpy as np


def _energy_absm(spins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = spins.astype(np.int32)
    bonds = (s * np.roll(s, 1, axis=-1) + s * np.roll(s, 1, axis=-2)).sum(axis=(-2, -1))
    n_sites = s.shape[-1] * s.shape[-2]
    return -bonds / n_sites, np.abs(s.sum(axis=(-2, -1))) / n_sites


class _NumpyEngine:
    def __init__(self, L: int, beta: float, n_chains: int, seed: int):
        self.L, self.beta, self.n_chains = L, float(beta), n_chains
        self.rng = np.random.Generator(np.random.Philox(seed))
        self.spins = np.where(self.rng.random((n_chains, L, L)) < 0.5, -1, 1).astype(np.int8)

    def run(self, n_steps: int, record: bool = False):
        """Advance every chain ``n_steps``; with ``record``, return energy and |m| per spin, shape (chains, steps)."""
        energy = np.empty((self.n_chains, n_steps)) if record else None
        absm = np.empty((self.n_chains, n_steps)) if record else None
        for t in range(n_steps):
            self._step()
            if record:
                energy[:, t], absm[:, t] = _energy_absm(self.spins)
        return (energy, absm) if record else None

    def configs(self) -> np.ndarray:
        return self.spins.copy()


class ReferenceMetropolis(_NumpyEngine):
    """Checkerboard single-spin Metropolis: flip ``s`` with probability ``min(1, exp(-2 beta s h))``."""

    def __init__(self, L, beta, n_chains, seed):
        if L % 2 or L < 4:
            raise ValueError(f"checkerboard Metropolis needs an even L >= 4, got L={L}")
        super().__init__(L, beta, n_chains, seed)
        y, x = np.indices((L, L))
        self.colours = [(x + y) % 2 == c for c in (0, 1)]
        self.accept = {dE: math.exp(-self.beta * dE) for dE in (-8, -4, 0, 4, 8)}

    def _step(self):
        s = self.spins
        for colour in self.colours:
            field = (np.roll(s, 1, -1) + np.roll(s, -1, -1) + np.roll(s, 1, -2) + np.roll(s, -1, -2)).astype(np.int32)
            d_energy = 2 * s.astype(np.int32) * field
            prob = np.exp(-self.beta * np.maximum(d_energy, 0))
            flip = colour & (self.rng.random(s.shape) < prob)
            s[flip] = -s[flip]


class ReferenceSwendsenWang(_NumpyEngine):
    """Swendsen-Wang: bond aligned neighbours with ``p = 1 - exp(-2 beta)``, flip each cluster with prob 1/2."""

    def __init__(self, L, beta, n_chains, seed):
        try:
            import scipy.sparse  # noqa: F401
        except ImportError as exc:
            raise RuntimeError("the numpy Swendsen-Wang reference needs scipy (pip install scipy)") from exc
        super().__init__(L, beta, n_chains, seed)

    def _step(self):
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        s, L, n = self.spins, self.L, self.n_chains
        p_bond = -math.expm1(-2.0 * self.beta)
        index = np.arange(n * L * L).reshape(n, L, L)
        heads, tails = [], []
        for axis in (-1, -2):
            neighbour = np.roll(s, -1, axis=axis)
            bonded = (s == neighbour) & (self.rng.random(s.shape) < p_bond)
            heads.append(index[bonded])
            tails.append(np.roll(index, -1, axis=axis)[bonded])
        heads, tails = np.concatenate(heads), np.concatenate(tails)
        graph = coo_matrix((np.ones(heads.size, dtype=np.int8), (heads, tails)), shape=(index.size, index.size))
        n_clusters, label = connected_components(graph, directed=False)
        flip = self.rng.random(n_clusters) < 0.5
        s[flip[label].reshape(s.shape)] *= -1


class ReferenceWolff(_NumpyEngine):
    """Wolff single-cluster updates; one step is ``flips_per_step`` cluster flips (set by the sampler)."""

    def __init__(self, L, beta, n_chains, seed):
        super().__init__(L, beta, n_chains, seed)
        self.flips_per_step = 1
        self.flipped_sites = 0
        self.flips = 0

    def _step(self):
        L, p_add = self.L, -math.expm1(-2.0 * self.beta)
        for lattice in self.spins:
            for _ in range(self.flips_per_step):
                seed_site = divmod(int(self.rng.integers(L * L)), L)
                spin = lattice[seed_site]
                lattice[seed_site] = -spin
                stack, size = [seed_site], 1
                while stack:
                    y, x = stack.pop()
                    for ny, nx in (((y + 1) % L, x), ((y - 1) % L, x), (y, (x + 1) % L), (y, (x - 1) % L)):
                        if lattice[ny, nx] == spin and self.rng.random() < p_add:
                            lattice[ny, nx] = -spin
                            stack.append((ny, nx))
                            size += 1
                self.flipped_sites += size
                self.flips += 1
