"""Bernoulli restricted Boltzmann machine (energy model of Eq. 23 in the RBM source paper):

    E(v, h) = -b^T v - c^T h - v^T W h,      v in {0,1}^nv, h in {0,1}^nh,  p(v, h) = exp(-E) / Z.

Summing out ``h`` gives the free energy ``F(v) = -b^T v - sum_j softplus(c_j + (v W)_j)`` with
``p(v) = exp(-F(v)) / Z``. The gradient of the mean log-likelihood of data ``D`` is
``-<dF/dtheta>_D + <dF/dtheta>_model``; contrastive divergence (CD-k) estimates the model term with chains started
at the data and run ``k`` block-Gibbs steps, persistent CD (PCD) with chains carried over between updates.

Block-Gibbs sampling (:func:`gibbs`) has three backends: ``reference`` (plain torch), ``cpp`` (fused C++ kernel,
OpenMP over chains, counter-based RNG: results are independent of the thread count) and ``triton`` (fused, whole W
on chip, nv, nh <= 128). For small RBMs :meth:`BernoulliRBM.log_partition` enumerates the smaller layer exactly.
"""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from ... import _extensions
from ..._kernel_args import Out, launch, typed_kernel
from ...backends import OpDispatcher

MAX_ENUMERATION_UNITS = 24
# auto on CPU uses the fused C++ kernel up to this many weights (per-chain matrix-vector products; beyond it
# torch's batched matrix products win).
_CPP_AUTO_MAX_WEIGHTS = 1 << 14
_WORK_PER_THREAD = 1 << 18  # multiply-adds per OpenMP thread below which the C++ kernel stays serial

_gibbs = OpDispatcher("rbm_gibbs", auto_order={"cpu": ("cpp", "reference"), "cuda": ("triton", "reference")})


@_gibbs.register("reference")
def _gibbs_reference(v0, W, b, c, k, seed, step_offset):
    generator = torch.Generator(device=v0.device).manual_seed(seed * 1_000_003 + step_offset)
    v, h = v0.clone(), torch.zeros(v0.shape[0], W.shape[1], dtype=v0.dtype, device=v0.device)
    for _ in range(k):
        h = torch.bernoulli(torch.sigmoid(v @ W + c), generator=generator)
        v = torch.bernoulli(torch.sigmoid(h @ W.t() + b), generator=generator)
    return v, h


def _cpp_prefers(v0, W, b, c, k, seed, step_offset) -> bool:
    """``auto`` takes the fused C++ kernel up to ``_CPP_AUTO_MAX_WEIGHTS`` weights (bench/results/rbm.md)."""
    return W.numel() <= _CPP_AUTO_MAX_WEIGHTS


@_gibbs.register("cpp", prefers=_cpp_prefers)
def _gibbs_cpp(v0, W, b, c, k, seed, step_offset):
    v_out = v0.new_empty(v0.shape)
    h_out = v0.new_empty(v0.shape[0], W.shape[1])
    kernel = typed_kernel(_extensions.cpu().rbm, "gibbs", v0.dtype)
    # Small calls run on one thread: waking a team costs more than the work (and stalls on a busy machine).
    work = v0.shape[0] * W.numel() * k
    threads = max(1, min(torch.get_num_threads(), work // _WORK_PER_THREAD))
    launch(kernel, v0, W, b, c, Out(v_out), Out(h_out), v0.shape[0], v0.shape[1], W.shape[1], k, seed, step_offset,
           threads, dtype=v0.dtype)
    return v_out, h_out


def _triton_supports(v0, W, b, c, k, seed, step_offset) -> str | None:
    from .triton_kernels import MAX_UNITS

    if v0.dtype != torch.float32:
        return f"the triton kernel runs in float32, got {v0.dtype}"
    if max(W.shape) > MAX_UNITS:
        return f"the triton kernel holds W on chip: nv and nh must be <= {MAX_UNITS}, got {tuple(W.shape)}"
    return None


@_gibbs.register("triton", supports=_triton_supports)
def _gibbs_triton(v0, W, b, c, k, seed, step_offset):
    from .triton_kernels import gibbs as triton_gibbs

    return triton_gibbs(v0, W, b, c, k, seed, step_offset)


def gibbs(v0: torch.Tensor, W: torch.Tensor, b: torch.Tensor, c: torch.Tensor, k: int = 1, seed: int = 0,
          step_offset: int = 0, backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``k`` block-Gibbs steps from ``v0`` ``(batch, nv)`` (0/1 values): each step draws
    ``h ~ p(h | v)`` then ``v ~ p(v | h)``. Returns ``(v_k, h_k)`` of shapes ``(batch, nv)``, ``(batch, nh)``.

    ``W``: ``(nv, nh)``, ``b``: ``(nv,)``, ``c``: ``(nh,)``, same floating dtype and device as ``v0``. The stream is
    a function of ``(seed, step_offset)`` (and the backend); ``step_offset`` lets a chain continue (PCD).
    No gradient flows through sampling. With the ``auto`` backend, RBMs with more than 16384 weights on CPU
    (batched BLAS is faster there than the fused per-chain kernel) and, on a GPU, in float64 or with more than 128
    units (the Triton kernel's limits) use the reference.
    """
    if not all(isinstance(t, torch.Tensor) for t in (v0, W, b, c)):
        raise TypeError("v0, W, b and c must be torch.Tensors")
    if v0.dim() != 2 or W.dim() != 2 or b.dim() != 1 or c.dim() != 1:
        raise ValueError(f"expected v0 (batch, nv), W (nv, nh), b (nv,), c (nh,); got {tuple(v0.shape)}, "
                         f"{tuple(W.shape)}, {tuple(b.shape)}, {tuple(c.shape)}")
    nv, nh = W.shape
    if v0.shape[1] != nv or b.shape[0] != nv or c.shape[0] != nh:
        raise ValueError(f"shape mismatch: v0 {tuple(v0.shape)}, W {tuple(W.shape)}, b {tuple(b.shape)}, "
                         f"c {tuple(c.shape)}")
    if not v0.is_floating_point() or len({t.dtype for t in (v0, W, b, c)}) != 1:
        raise TypeError(f"v0, W, b, c must share one floating dtype, got {[str(t.dtype) for t in (v0, W, b, c)]}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if not isinstance(seed, int) or seed < 0 or not isinstance(step_offset, int) or step_offset < 0:
        raise ValueError(f"seed and step_offset must be non-negative integers, got {seed!r}, {step_offset!r}")
    with torch.no_grad():
        call = (*(t.detach().contiguous() for t in (v0, W, b, c)), k, seed, step_offset)
        return _gibbs.get(v0.device, backend, v0.dtype, call=call)(*call)


def all_binary_states(n: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """All ``2^n`` vectors of ``{0,1}^n`` as rows; row ``s`` is the binary expansion of ``s`` (bit 0 first)."""
    if n > MAX_ENUMERATION_UNITS:
        raise ValueError(f"enumeration over {n} units (2^{n} states) is too large; limit {MAX_ENUMERATION_UNITS}")
    states = torch.arange(2 ** n, device=device)
    return ((states[:, None] >> torch.arange(n, device=device)) & 1).to(dtype)


class BernoulliRBM(nn.Module):
    """Bernoulli-Bernoulli RBM with parameters ``W`` ``(nv, nh)``, visible bias ``b`` and hidden bias ``c``."""

    def __init__(self, n_visible: int, n_hidden: int, *, dtype: torch.dtype = torch.float32, seed: int = 0,
                 init_std: float = 0.01):
        super().__init__()
        if not isinstance(n_visible, int) or not isinstance(n_hidden, int) or n_visible < 1 or n_hidden < 1:
            raise ValueError(f"n_visible and n_hidden must be positive integers, got {n_visible!r}, {n_hidden!r}")
        generator = torch.Generator().manual_seed(seed)
        self.W = nn.Parameter(init_std * torch.randn(n_visible, n_hidden, generator=generator, dtype=dtype))
        self.b = nn.Parameter(torch.zeros(n_visible, dtype=dtype))
        self.c = nn.Parameter(torch.zeros(n_hidden, dtype=dtype))

    @property
    def n_visible(self) -> int:
        return self.W.shape[0]

    @property
    def n_hidden(self) -> int:
        return self.W.shape[1]

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Eq. 23: ``E(v, h) = -b.v - c.h - v^T W h``; ``(B, nv), (B, nh) -> (B,)``."""
        return -(v @ self.b) - (h @ self.c) - ((v @ self.W) * h).sum(-1)

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """``F(v) = -log sum_h exp(-E(v, h)) = -b.v - sum_j softplus(c_j + (v W)_j)``; ``(B, nv) -> (B,)``."""
        return -(v @ self.b) - nn.functional.softplus(v @ self.W + self.c).sum(-1)

    def hidden_probs(self, v: torch.Tensor) -> torch.Tensor:
        """``p(h_j = 1 | v) = sigmoid(c_j + (v W)_j)``."""
        return torch.sigmoid(v @ self.W + self.c)

    def visible_probs(self, h: torch.Tensor) -> torch.Tensor:
        """``p(v_i = 1 | h) = sigmoid(b_i + (W h)_i)``."""
        return torch.sigmoid(h @ self.W.t() + self.b)

    def sample(self, v0: torch.Tensor, k: int = 1, seed: int = 0, step_offset: int = 0,
               backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``k`` block-Gibbs steps from ``v0`` with the current parameters (see :func:`gibbs`)."""
        return gibbs(v0.to(self.W.dtype), self.W, self.b, self.c, k, seed, step_offset, backend)

    def log_partition(self) -> torch.Tensor:
        """Exact ``log Z`` by enumerating the smaller layer (differentiable)."""
        if self.n_visible <= self.n_hidden:
            v = all_binary_states(self.n_visible, self.W.dtype, self.W.device)
            return torch.logsumexp(-self.free_energy(v), 0)
        h = all_binary_states(self.n_hidden, self.W.dtype, self.W.device)
        # sum_v exp(-E(v, h)) = exp(c.h) prod_i (1 + exp(b_i + (W h)_i))
        return torch.logsumexp(h @ self.c + nn.functional.softplus(h @ self.W.t() + self.b).sum(-1), 0)

    def log_prob(self, v: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(v) = -F(v) - log Z``; ``(B, nv) -> (B,)`` (small RBMs only)."""
        return -self.free_energy(v) - self.log_partition()

    def contrastive_loss(self, v_data: torch.Tensor, v_model: torch.Tensor) -> torch.Tensor:
        """``mean F(v_data) - mean F(v_model)``: its gradient (``v_model`` held fixed) is the CD/PCD estimate of
        ``-grad mean log p(v_data)``; equal to it when ``v_model`` are exact model samples in expectation."""
        return self.free_energy(v_data).mean() - self.free_energy(v_model.detach()).mean()


def train_rbm(rbm: BernoulliRBM, data: torch.Tensor, *, method: str = "pcd", k: int = 1, epochs: int = 10,
              batch_size: int = 64, lr: float = 1e-2, seed: int = 0, backend: str | None = None,
              progress: bool = True, on_epoch=None) -> dict:
    """Train ``rbm`` on ``data`` ``(N, nv)`` (0/1) with CD-k (``method="cd"``: chains start at the batch) or
    persistent CD (``"pcd"``: ``batch_size`` chains carried across updates), Adam with learning rate ``lr``.

    ``on_epoch(epoch, rbm)`` may return a dict of metrics, stored in the history next to the reconstruction error.
    Returns ``{"epoch": [...], "reconstruction_error": [...], <metrics>: [...]}``.
    """
    if method not in ("cd", "pcd"):
        raise ValueError(f"method must be 'cd' or 'pcd', got {method!r}")
    if data.dim() != 2 or data.shape[1] != rbm.n_visible:
        raise ValueError(f"data must have shape (N, {rbm.n_visible}), got {tuple(data.shape)}")
    if not isinstance(epochs, int) or epochs < 0 or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"epochs must be >= 0 and batch_size >= 1, got {epochs!r}, {batch_size!r}")
    data = data.to(rbm.W.dtype)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(rbm.parameters(), lr=lr)
    chains = data[torch.randint(0, data.shape[0], (batch_size,), generator=generator)].clone()
    history: dict[str, list] = {"epoch": [], "reconstruction_error": []}
    step = 0
    for epoch in tqdm(range(epochs), desc=f"rbm {method}-{k}", disable=not progress, leave=False):
        order = torch.randperm(data.shape[0], generator=generator)
        error, batches = 0.0, 0
        for start in range(0, data.shape[0], batch_size):
            v_data = data[order[start:start + batch_size]]
            start_state = chains if method == "pcd" else v_data
            v_model, _ = rbm.sample(start_state, k, seed=seed, step_offset=step * k, backend=backend)
            if method == "pcd":
                chains = v_model
            step += 1
            loss = rbm.contrastive_loss(v_data, v_model)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                error += float(((rbm.visible_probs(rbm.hidden_probs(v_data)) - v_data) ** 2).mean())
            batches += 1
        history["epoch"].append(epoch + 1)
        history["reconstruction_error"].append(error / max(batches, 1))
        if on_epoch is not None:
            for name, value in (on_epoch(epoch + 1, rbm) or {}).items():
                history.setdefault(name, []).append(value)
    return history


def log_likelihood_gradient_exact(rbm: BernoulliRBM, v: torch.Tensor) -> dict[str, torch.Tensor]:
    """``grad mean_v log p(v)`` for ``W``, ``b``, ``c`` by enumerating every joint state ``(v, h)``
    (independent of the free-energy formula; tiny RBMs only): data term ``<v p(h|v)^T>`` minus the model
    expectation ``sum_{v,h} p(v,h) v h^T`` with ``p(v, h) = exp(-E(v, h)) / Z`` from Eq. 23."""
    with torch.no_grad():
        vs = all_binary_states(rbm.n_visible, rbm.W.dtype)
        hs = all_binary_states(rbm.n_hidden, rbm.W.dtype)
        if rbm.n_visible + rbm.n_hidden > MAX_ENUMERATION_UNITS:
            raise ValueError("joint enumeration needs n_visible + n_hidden <= 24")
        V = vs.repeat_interleave(hs.shape[0], 0)
        H = hs.repeat(vs.shape[0], 1)
        p = torch.softmax(-rbm.energy(V, H), 0)
        ph = rbm.hidden_probs(v)
        return {
            "W": v.t() @ ph / v.shape[0] - (V * p[:, None]).t() @ H,
            "b": v.mean(0) - p @ V,
            "c": ph.mean(0) - p @ H,
        }


def spins_to_visible(spins: torch.Tensor) -> torch.Tensor:
    """Ising spins ``(N, L, L)`` of +-1 -> RBM visible units ``(N, L*L)`` in {0, 1} (``v = (s + 1) / 2``)."""
    return ((spins.reshape(spins.shape[0], -1).to(torch.float64) + 1) / 2)


def visible_to_spins(v: torch.Tensor, L: int) -> torch.Tensor:
    """Inverse of :func:`spins_to_visible`: ``(N, L*L)`` in {0, 1} -> ``(N, L, L)`` of +-1 (float)."""
    return (2 * v - 1).reshape(v.shape[0], L, L)


__all__ = ["BernoulliRBM", "MAX_ENUMERATION_UNITS", "all_binary_states", "gibbs", "log_likelihood_gradient_exact",
           "spins_to_visible", "train_rbm", "visible_to_spins"]
