"""Monte Carlo engines behind :func:`sample`, keyed by (algorithm, backend), fastest backend first.

An engine is built as ``Engine(L, beta, n_chains, seed)`` and offers ``run(n_steps, record=False)`` (returning
per-step energy and ``|m|`` per spin of shape ``(n_chains, n_steps)`` when ``record``), ``configs()`` (int8
``(n_chains, L, L)``) and the classmethod ``available()``; Wolff engines add ``cluster_counts()`` (total flipped sites, total flips) and
``set_flips_per_step(k)``.
"""

from __future__ import annotations

import torch

from ... import _extensions
from ..._kernel_args import Out, launch
from ...backends import OpDispatcher, get_backend
from . import reference


def random_spins(n_chains: int, L: int, seed: int) -> torch.Tensor:
    """Independent uniformly random +-1 configurations, int8 (n_chains, L, L), a function of ``seed`` only."""
    generator = torch.Generator().manual_seed(seed)
    bits = torch.randint(0, 2, (n_chains, L, L), generator=generator, dtype=torch.int8)
    return bits * 2 - 1


class _Compiled:
    """Base of the C++ engines: the RNG is counter based, so a step counter is all the state besides spins."""

    def __init__(self, L, beta, n_chains, seed):
        self.L, self.beta, self.n_chains, self.seed = L, float(beta), n_chains, seed
        self.step = 0

    @classmethod
    def available(cls) -> bool:
        return _extensions.load("_C") is not None

    @staticmethod
    def _kernels():
        return _extensions.cpu().ising

    @staticmethod
    def _threads() -> int:
        return torch.get_num_threads()


class CppMetropolisEngine(_Compiled):
    """Multispin checkerboard Metropolis: chain ``c`` is bit ``c % 64`` of word lattice ``c // 64``."""

    def __init__(self, L, beta, n_chains, seed):
        super().__init__(L, beta, n_chains, seed)
        self.n_words = -(-n_chains // 64)
        spins = random_spins(self.n_words * 64, L, seed)
        self.words = torch.empty((self.n_words, L, L), dtype=torch.int64)
        launch(self._kernels().pack_spins, spins, self.n_words * 64, L, Out(self.words), self._threads())

    def run(self, n_steps, record=False):
        n_sites = self.L * self.L
        anti = up = None
        if record:
            anti = torch.empty((self.n_words * 64, n_steps), dtype=torch.int32)
            up = torch.empty_like(anti)
        launch(self._kernels().metropolis_multispin, Out(self.words), self.n_words, self.L, self.beta, n_steps,
               self.seed, self.step, Out(anti), Out(up), self._threads())
        self.step += n_steps
        if not record:
            return None
        anti, up = anti[: self.n_chains].double(), up[: self.n_chains].double()
        return ((2.0 * anti - 2 * n_sites) / n_sites).numpy(), ((2.0 * up - n_sites).abs() / n_sites).numpy()

    def configs(self) -> torch.Tensor:
        out = torch.empty((self.n_chains, self.L, self.L), dtype=torch.int8)
        launch(self._kernels().unpack_spins, self.words, self.n_chains, self.L, Out(out), self._threads())
        return out


def pack_words(spins: torch.Tensor) -> torch.Tensor:
    """int8 +-1 ``(n_chains, L, L)`` -> int64 words ``(ceil(n_chains / 64), L, L)``, chain ``c`` = bit ``c % 64``
    of word lattice ``c // 64`` (missing chains are spin up). Plain torch, any device."""
    n_chains, L = spins.shape[0], spins.shape[-1]
    n_words = -(-n_chains // 64)
    up = torch.ones((n_words * 64, L, L), dtype=torch.int64, device=spins.device)
    up[:n_chains] = (spins > 0).to(torch.int64)
    weights = torch.tensor([1 << b for b in range(63)] + [-(1 << 63)], dtype=torch.int64, device=spins.device)
    return (up.reshape(n_words, 64, L, L) * weights[None, :, None, None]).sum(dim=1)


def unpack_words(words: torch.Tensor, n_chains: int) -> torch.Tensor:
    """Inverse of :func:`pack_words`: int8 +-1 ``(n_chains, L, L)``."""
    L = words.shape[-1]
    shifts = torch.arange(64, dtype=torch.int64, device=words.device)
    bits = (words[:, None] >> shifts[None, :, None, None]) & 1
    return (bits.reshape(-1, L, L)[:n_chains] * 2 - 1).to(torch.int8)


class _DeviceMetropolisEngine:
    """Multispin Metropolis on the GPU (CUDA or Triton kernel; Triton also on CPU under ``TRITON_INTERPRET=1``).

    Same word layout, initial state and random numbers as :class:`CppMetropolisEngine`, hence the same chains.
    Observables for the pilot run are computed with torch after every sweep.
    """

    def __init__(self, L, beta, n_chains, seed):
        self.L, self.beta, self.n_chains, self.seed = L, float(beta), n_chains, seed
        self.step = 0
        self.n_words = -(-n_chains // 64)
        self.words = pack_words(random_spins(self.n_words * 64, L, seed)).to(self.device())

    def _sweeps(self, n_steps):
        raise NotImplementedError

    def run(self, n_steps, record=False):
        if not record:
            self._sweeps(n_steps)
            return None
        energy = torch.empty((self.n_chains, n_steps), dtype=torch.float64)
        abs_m = torch.empty_like(energy)
        from .observables import energy_per_spin, magnetization_per_spin

        for t in range(n_steps):
            self._sweeps(1)
            spins = unpack_words(self.words, self.n_chains)
            energy[:, t] = energy_per_spin(spins).cpu()
            abs_m[:, t] = magnetization_per_spin(spins).abs().cpu()
        return energy.numpy(), abs_m.numpy()

    def configs(self) -> torch.Tensor:
        return unpack_words(self.words, self.n_chains).cpu()


class TritonMetropolisEngine(_DeviceMetropolisEngine):
    @staticmethod
    def device() -> torch.device:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    @classmethod
    def available(cls) -> bool:
        import os

        from ...backends import _triton_importable

        return _triton_importable() and (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1")

    def _sweeps(self, n_steps):
        from . import triton_kernels as ising_triton

        ising_triton.metropolis_multispin(self.words, self.beta, n_steps, self.seed, self.step)
        self.step += n_steps


class CudaMetropolisEngine(_DeviceMetropolisEngine):
    @staticmethod
    def device() -> torch.device:
        return torch.device("cuda")

    @classmethod
    def available(cls) -> bool:
        return torch.cuda.is_available() and _extensions.load("_C_cuda") is not None

    def _sweeps(self, n_steps):
        launch(_extensions.cuda().ising.metropolis_multispin, Out(self.words), self.n_words, self.L, self.beta,
               n_steps, self.seed, self.step, torch.cuda.current_stream().cuda_stream)
        self.step += n_steps


class _CppInt8(_Compiled):
    """int8 chains; ``beta`` may be a float or a float64 tensor of one inverse temperature per chain."""

    def __init__(self, L, beta, n_chains, seed):
        self.betas = torch.as_tensor(beta, dtype=torch.float64).expand(n_chains).contiguous()
        super().__init__(L, float(self.betas[0]), n_chains, seed)
        self.spins = random_spins(n_chains, L, seed)

    def configs(self) -> torch.Tensor:
        return self.spins.clone()

    def _records(self, n_steps, record):
        if not record:
            return None, None
        energy = torch.empty((self.n_chains, n_steps), dtype=torch.float64)
        return energy, torch.empty_like(energy)


class CppWolffEngine(_CppInt8):
    """Wolff single-cluster flips; ``step`` counts cluster flips (the RNG counter)."""

    def __init__(self, L, beta, n_chains, seed):
        super().__init__(L, beta, n_chains, seed)
        self.flips_per_step = 1
        self.flipped_sites = torch.zeros(n_chains, dtype=torch.int64)

    def set_flips_per_step(self, k: int) -> None:
        self.flips_per_step = int(k)

    def cluster_counts(self) -> tuple[int, int]:
        return int(self.flipped_sites.sum()), self.step * self.n_chains

    def run(self, n_steps, record=False):
        energy, abs_m = self._records(n_steps, record)
        launch(self._kernels().wolff, Out(self.spins), self.n_chains, self.L, self.betas, n_steps,
               self.flips_per_step, self.seed, self.step, Out(energy), Out(abs_m), Out(self.flipped_sites),
               self._threads())
        self.step += n_steps * self.flips_per_step
        return (energy.numpy(), abs_m.numpy()) if record else None


class CppSwendsenWangEngine(_CppInt8):
    def run(self, n_steps, record=False):
        energy, abs_m = self._records(n_steps, record)
        launch(self._kernels().swendsen_wang, Out(self.spins), self.n_chains, self.L, self.betas, n_steps,
               self.seed, self.step, Out(energy), Out(abs_m), self._threads())
        self.step += n_steps
        return (energy.numpy(), abs_m.numpy()) if record else None


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

    def cluster_counts(self) -> tuple[int, int]:
        return self._engine.flipped_sites, self._engine.flips

    def set_flips_per_step(self, k: int) -> None:
        self._engine.flips_per_step = k


class ReferenceMetropolisEngine(_Reference):
    impl = reference.ReferenceMetropolis


class ReferenceSwendsenWangEngine(_Reference):
    impl = reference.ReferenceSwendsenWang


class ReferenceWolffEngine(_Reference):
    impl = reference.ReferenceWolff


ENGINES = {
    ("wolff", "cpp"): CppWolffEngine,
    ("metropolis", "cpp"): CppMetropolisEngine,
    ("swendsen_wang", "cpp"): CppSwendsenWangEngine,
    ("metropolis", "cuda"): CudaMetropolisEngine,
    ("metropolis", "triton"): TritonMetropolisEngine,
    ("wolff", "reference"): ReferenceWolffEngine,
    ("metropolis", "reference"): ReferenceMetropolisEngine,
    ("swendsen_wang", "reference"): ReferenceSwendsenWangEngine,
}


def _engine_supports(cls):
    """The ``supports`` hook of an engine class: its ``available()`` (the compiled module or GPU it needs)."""
    def supports() -> str | None:
        return None if cls.available() else f"{cls.__name__} is not available here (module not built or no GPU)"
    return supports


# One dispatcher per algorithm: ``auto`` takes the compiled engine when it is built, else numpy; the GPU engines
# run when chosen (``physkernels.set_backend``/``use_backend`` or ``sample(backend=...)``).
DISPATCHERS = {algorithm: OpDispatcher(f"ising_{algorithm}", auto_order={"cpu": ("cpp", "reference")})
               for algorithm in sorted({a for a, _ in ENGINES})}
for (_algorithm, _backend), _cls in ENGINES.items():
    DISPATCHERS[_algorithm].register(_backend, supports=_engine_supports(_cls))(_cls)


def resolve(algorithm: str, backend: str | None = None) -> str:
    """The backend that runs ``algorithm``: ``backend`` when given (``"auto"`` included), else the process-wide
    choice (``physkernels.set_backend`` / ``use_backend``). BackendUnavailableError when it cannot run here."""
    name = backend if backend is not None else get_backend()
    device = "cuda" if name in ("cuda", "triton") and torch.cuda.is_available() else "cpu"
    return DISPATCHERS[algorithm].resolve(device, backend, call=())
