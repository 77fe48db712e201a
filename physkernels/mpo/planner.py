"""Contraction planner for ``mpo_linear``: which order and which kernels evaluate ``x @ W^T`` fastest.

A plan is a family member of one construction:

1. **Grouping.** Adjacent cores are merged into one larger core (``groups``: contiguous ``[start, stop)`` ranges).
   Merging a group of cores (D_l, I_a, J_a, D) . (D, I_b, J_b, D_r) costs ``D_l I_a J_a D I_b J_b D_r`` MACs,
   independent of the batch; its backward (projecting the merged core's gradient onto its members) costs twice
   that. One group holding every core is "reconstruct W, then one GEMM" (the dense strategy).
2. **Direction.** The merged cores are applied to x one by one, left-to-right (``ltr``) or right-to-left
   (``rtl``), with the batch as the fastest-varying index (x is transposed once to ``(prod I, B)``). Every step is
   then a batched GEMM ``out[g] = A @ S[g]`` with no further permutation:

   * ltr, group (D_l, I_g, J_g, D_r): ``G = prod J_<g``, ``A: (J_g D_r) x (D_l I_g)``, ``S[g]: (D_l I_g) x (prod I_>g B)``
   * rtl: ``G = prod I_<g``, ``A: (D_l J_g) x (I_g D_r)``, ``S[g]: (I_g D_r) x (prod J_>g B)``
3. **Kernel.** ``gemm``: each step is one torch matmul call (GEMM-bound regimes). ``fused``: one compiled kernel
   (C++/OpenMP on CPU, Triton/CUDA on GPU) runs the whole ltr chain per batch tile with the intermediates in cache
   (latency-bound regimes: small batches, small layers). The C++ kernel also merges the groups and projects the
   merged gradients back itself (no torch call per merge; its backward merges again instead of keeping them).

The backward of a chain step costs two steps (``dS = A^T dOut`` and ``dA = sum_g dOut S^T``) and needs the
forward intermediates: eager autograd keeps them from the forward; the custom op's backward (what torch.compile
traces) recomputes them (one more forward, ``Plan.recompute``). The backward of the dense plan is two
GEMMs (``dx = g W``, ``dW = g^T x``) and the projection of dW onto the cores.

The cost model prices every kernel call as ``overhead + flops / rate + bytes / bandwidth``, where the GEMM rate
falls for thin matrices (``rate = peak * prod_d d / (d + d_half)`` over the three GEMM dimensions). The planner
enumerates all ``2^(n-1)`` groupings x 2 directions x kernels and keeps the cheapest for the objective:
``training`` (forward + backward with kept states; eager autograd runs both with this plan), ``forward``
(inference, and the custom op's forward) or ``backward`` (the custom op's backward, which recomputes the states
and so is planned on its own). Plans are cached per (shapes, ranks, batch, dtype, device, kernels).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from dataclasses import dataclass, field

import torch

__all__ = ["Plan", "Cost", "CostModel", "plan", "cost_model", "enumerate_plans", "objective_seconds"]


@dataclass(frozen=True)
class CostModel:
    """Machine constants of the cost model (seconds, flop/s, byte/s), one set per device type."""

    gemm_peak: float  # flop/s of a large GEMM
    gemm_half: tuple[float, float, float]  # (m, k, n) sizes at which a GEMM runs at half its peak rate per dim
    bandwidth: float  # byte/s of streaming copies
    call_overhead: float  # s per torch call (dispatch, allocation)
    op_overhead: float  # s per custom-op call (forward or backward)
    fused_peak: float  # flop/s of the fused chain kernel's micro-kernels on long, tall steps (one thread on CPU)
    fused_half: tuple[float, float, float]  # (m, k, n) per step at which the fused kernel runs at half its peak
    fused_overhead: float  # s per fused-kernel call
    fused_merge_overhead: float = 0.0  # s per pair of cores merged (or projected back) inside a fused call
    threads: int = 1  # CPU threads; the fused kernel runs one batch tile per thread


_MODELS = {
    # One CPU thread, float32: fitted to single-thread CPU times of the top candidate plans of every benchmark shape
    # (bench/mpo_plans.py; the data, the fit and its quality: bench/results/mpo_plans.md, docs/mpo-kernels.md).
    # Rates scale with the thread count as threads**0.85 (cost_model). The fused constants describe the C++ chain
    # kernel's micro-kernels, which also do the core merges (fused_merge_overhead per merged pair and pass).
    "cpu": CostModel(gemm_peak=5e10, gemm_half=(6.0, 6.0, 24.0), bandwidth=8e9, call_overhead=6e-6,
                     op_overhead=2e-5, fused_peak=9e10, fused_half=(8.0, 4.0, 16.0), fused_overhead=2e-5,
                     fused_merge_overhead=3e-6),
    # Order-of-magnitude constants for one datacenter GPU (not fitted to measurements). The GPU fused kernels
    # merge with torch calls around them: a GEMM and a copy per merged pair.
    "cuda": CostModel(gemm_peak=4e13, gemm_half=(32.0, 32.0, 256.0), bandwidth=2e12, call_overhead=8e-6,
                      op_overhead=3e-5, fused_peak=5e12, fused_half=(1.0, 1.0, 1.0), fused_overhead=6e-6,
                      fused_merge_overhead=1.6e-5),
}


def cost_model(device: str | torch.device, threads: int | None = None) -> CostModel:
    """The cost-model constants for ``device``'s type; CPU GEMM rates scale as ``threads**0.85`` (the fused kernel's
    as ``min(threads, batch tiles)**0.85``, see :func:`_costs`)."""
    device = torch.device(device)
    model = _MODELS.get(device.type, _MODELS["cpu"])
    if device.type != "cpu":
        return model
    threads = max(1, threads if threads is not None else torch.get_num_threads())
    return dataclasses.replace(model, gemm_peak=model.gemm_peak * threads ** 0.85, threads=threads)


@dataclass(frozen=True)
class Cost:
    """Predicted work of one pass: multiply-adds, bytes streamed, kernel calls and the modelled seconds."""

    macs: float = 0.0
    bytes: float = 0.0
    calls: int = 0
    seconds: float = 0.0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.macs + other.macs, self.bytes + other.bytes, self.calls + other.calls,
                    self.seconds + other.seconds)


@dataclass(frozen=True)
class Step:
    """One chain step as a batched GEMM ``out[g] (m x n) = A (m x k) @ S[g] (k x n)`` for g < count."""

    count: int
    m: int
    k: int
    n: int


@dataclass(frozen=True)
class Plan:
    """How to evaluate ``mpo_linear`` for one problem size.

    ``groups``: contiguous core ranges merged into one core each; ``direction``: ``ltr``/``rtl`` chain order;
    ``kernel``: ``gemm`` (torch matmul per step) or ``fused`` (one compiled chain kernel, ltr only).
    ``strategy`` names it in words; ``forward``/``backward`` are the predicted costs of each pass when the forward
    keeps the merged cores and the chain's states for the backward (the eager autograd path); ``recompute`` is the
    extra cost of a backward that recomputes them (the custom op's backward).
    """

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    ranks: tuple[int, ...]
    batch: int
    groups: tuple[tuple[int, int], ...]
    direction: str
    kernel: str
    forward: Cost
    backward: Cost
    recompute: Cost
    steps: tuple[Step, ...] = field(repr=False)

    @property
    def dense(self) -> bool:
        """True when every core is merged: W is reconstructed and applied by one GEMM."""
        return len(self.groups) == 1

    @property
    def strategy(self) -> str:
        if self.dense:
            return "dense (reconstruct W, one GEMM)"
        merged = [f"{a}-{b - 1}" for a, b in self.groups if b - a > 1]
        chain = f"{self.kernel} {self.direction} chain"
        return chain + (f", merged cores {','.join(merged)}" if merged else "")

    @property
    def predicted_seconds(self) -> float:
        """Modelled forward + backward time (the quantity minimised for training)."""
        return self.forward.seconds + self.backward.seconds

    def __str__(self) -> str:
        return (f"Plan({self.strategy}; fwd {self.forward.seconds * 1e3:.3g} ms, bwd {self.backward.seconds * 1e3:.3g} ms"
                f" predicted; fwd {self.forward.macs:.3g} MACs)")


# ----------------------------------------------------------------------------------------------------------------
# Shapes of merged cores and of the chain steps
# ----------------------------------------------------------------------------------------------------------------
def merged_shapes(in_shape, out_shape, ranks, groups):
    """Shape (D_l, I_g, J_g, D_r) of each merged group."""
    bonds = (1, *ranks, 1)
    return [(bonds[a], math.prod(in_shape[a:b]), math.prod(out_shape[a:b]), bonds[b]) for a, b in groups]


def chain_steps(shapes, direction: str, batch: int) -> list[Step]:
    """The batched GEMMs of a chain over merged cores ``shapes`` (in the order they run)."""
    steps = []
    n = len(shapes)
    if direction == "ltr":
        for g, (dl, ig, jg, dr) in enumerate(shapes):
            count = math.prod(s[2] for s in shapes[:g])
            rest = math.prod(s[1] for s in shapes[g + 1:]) * batch
            steps.append(Step(count, jg * dr, dl * ig, rest))
    elif direction == "rtl":
        for g in range(n - 1, -1, -1):
            dl, ig, jg, dr = shapes[g]
            count = math.prod(s[1] for s in shapes[:g])
            rest = math.prod(s[2] for s in shapes[g + 1:]) * batch
            steps.append(Step(count, dl * jg, ig * dr, rest))
    else:
        raise ValueError(f"direction must be 'ltr' or 'rtl', got {direction!r}")
    return steps


CPU_TILE_BYTES = 7 * 2**20
GPU_TILE_BYTES = 192 * 1024


def fused_tile(shapes, batch: int, itemsize: int, cache_bytes: int = CPU_TILE_BYTES, largest: int = 16) -> int:
    """Batch tile of the fused chain: the largest power of two <= ``largest`` whose per-tile states (all step inputs,
    kept by the backward, and two work buffers) fit ``cache_bytes``, and below twice the batch.

    Tiles of 16 samples fill a 512-bit vector on the last steps, whose rows are one sample per tile; the budget
    ``CPU_TILE_BYTES`` keeps a tile's states in the last-level cache (measured in docs/mpo-kernels.md). GPU kernels
    keep a tile's states in shared memory (``GPU_TILE_BYTES``). Depends on the shapes only (never on the thread count), so results do not depend on threads.
    """
    steps = chain_steps(shapes, "ltr", 1)
    per_sample = sum(s.count * s.k * s.n for s in steps) + 2 * max(
        max(s.count * s.k * s.n, s.count * s.m * s.n) for s in steps)
    tile = largest
    while tile > 1 and (tile * per_sample * itemsize > cache_bytes or tile >= 2 * batch):
        tile //= 2
    return tile


def merge_macs(in_shape, out_shape, ranks, groups) -> float:
    """MACs to merge every group's cores left to right (the forward of the merge; its backward costs twice)."""
    bonds = (1, *ranks, 1)
    total = 0.0
    for a, b in groups:
        pi, pj = in_shape[a], out_shape[a]
        for k in range(a + 1, b):
            total += bonds[a] * pi * pj * bonds[k] * in_shape[k] * out_shape[k] * bonds[k + 1]
            pi, pj = pi * in_shape[k], pj * out_shape[k]
    return total


# ----------------------------------------------------------------------------------------------------------------
# Cost model
# ----------------------------------------------------------------------------------------------------------------
def _gemm(model: CostModel, count: int, m: int, k: int, n: int, itemsize: int) -> Cost:
    macs = float(count) * m * k * n
    hm, hk, hn = model.gemm_half
    rate = model.gemm_peak * (m / (m + hm)) * (k / (k + hk)) * (n / (n + hn))
    nbytes = itemsize * (count * (k * n + m * n) + m * k)
    return Cost(macs, nbytes, 1, model.call_overhead + 2 * macs / rate + nbytes / model.bandwidth)


def _copy(model: CostModel, numel: int, itemsize: int) -> Cost:
    nbytes = 2 * itemsize * numel
    return Cost(0.0, nbytes, 1, model.call_overhead + nbytes / model.bandwidth)


def _merge_cost(model, in_shape, out_shape, ranks, groups, itemsize, passes: int) -> Cost:
    """Merging (passes=1) or projecting gradients through the merge (passes=2) of every group."""
    bonds = (1, *ranks, 1)
    total = Cost()
    for a, b in groups:
        pi, pj = in_shape[a], out_shape[a]
        for k in range(a + 1, b):
            step = _gemm(model, 1, bonds[a] * pi * pj, bonds[k], in_shape[k] * out_shape[k] * bonds[k + 1], itemsize)
            out_numel = bonds[a] * pi * pj * in_shape[k] * out_shape[k] * bonds[k + 1]
            for _ in range(passes):
                total = total + step + _copy(model, out_numel, itemsize)
            pi, pj = pi * in_shape[k], pj * out_shape[k]
    return total


def _fused_merge_cost(model, in_shape, out_shape, ranks, groups, passes: int) -> Cost:
    """Merging (passes=1) or projecting back (passes=2) inside a fused kernel call: serial micro-kernel GEMMs on
    small cores, no torch calls."""
    macs = passes * merge_macs(in_shape, out_shape, ranks, groups)
    pairs = passes * sum(b - a - 1 for a, b in groups)
    return Cost(macs, 0, 0, pairs * model.fused_merge_overhead + 2 * macs / model.fused_peak)


def _costs(model, in_shape, out_shape, ranks, batch, groups, direction, kernel, itemsize):
    shapes = merged_shapes(in_shape, out_shape, ranks, groups)
    p_in, p_out = math.prod(in_shape), math.prod(out_shape)
    if kernel == "fused" and len(groups) > 1:
        merge = _fused_merge_cost(model, in_shape, out_shape, ranks, groups, 1)
        unmerge = _fused_merge_cost(model, in_shape, out_shape, ranks, groups, 2)
    else:
        merge = _merge_cost(model, in_shape, out_shape, ranks, groups, itemsize, 1)
        unmerge = _merge_cost(model, in_shape, out_shape, ranks, groups, itemsize, 2)
    overhead = Cost(0, 0, 1, model.op_overhead)
    steps = chain_steps(shapes, direction, batch)
    if len(groups) == 1:  # dense: y = x W^T; dx = g W, dW = g^T x
        gemm = _gemm(model, 1, batch, p_in, p_out, itemsize)
        forward = overhead + merge + gemm
        backward = overhead + gemm + _gemm(model, 1, p_out, batch, p_in, itemsize) + unmerge
        return forward, backward, merge, steps
    step_costs = [_gemm(model, s.count, s.m, s.k, s.n, itemsize) for s in steps]
    if kernel == "fused":
        tile = fused_tile(shapes, batch, itemsize)
        busy = min(model.threads, -(-batch // tile)) ** 0.85  # threads that get a batch tile
        hm, hk, hn = model.fused_half
        seconds, macs = 0.0, 0.0
        for s in chain_steps(shapes, "ltr", 1):  # s.n: columns per sample; the kernel's rows hold s.n * tile
            step_macs = float(s.count) * s.m * s.k * s.n * batch
            n = s.n * tile
            rate = model.fused_peak * busy * (s.m / (s.m + hm)) * (s.k / (s.k + hk)) * (n / (n + hn))
            seconds += 2 * step_macs / rate
            macs += step_macs
        nbytes = itemsize * (batch * (p_in + p_out) + sum(s.m * s.k for s in steps))
        call = Cost(macs, nbytes, 1, model.fused_overhead + seconds + nbytes / model.bandwidth)
        core_grads = Cost(0, 0, 0, sum(s.m * s.k for s in steps) * itemsize * 2 / model.bandwidth)
        forward = overhead + merge + call
        # the backward merges again, recomputes the chain in cache, then runs dIn and dA per step
        backward = overhead + merge + call + call + call + core_grads + unmerge
        return forward, backward, Cost(), steps
    transposes = _copy(model, batch * p_in, itemsize) + _copy(model, batch * p_out, itemsize)
    chain = sum(step_costs, Cost())
    forward = overhead + merge + transposes + chain
    # backward (forward states kept; recomputing them costs `chain` more): per step dS = A^T dOut and
    # dA = sum_g dOut[g] S[g]^T (a batched GEMM contracting n, then a sum of the count small m x k products)
    weight_grads = Cost()
    for s in steps:
        weight_grads = weight_grads + _gemm(model, s.count, s.m, s.n, s.k, itemsize)
        if s.count > 1:
            weight_grads = weight_grads + _copy(model, s.count * s.m * s.k, itemsize)
    backward = overhead + transposes + chain + weight_grads + unmerge
    return forward, backward, merge + chain, steps


def _groupings(n: int):
    """Every split of cores 0..n-1 into contiguous groups."""
    for cuts in itertools.product((False, True), repeat=n - 1):
        bounds = [0] + [k + 1 for k, cut in enumerate(cuts) if cut] + [n]
        yield tuple(zip(bounds[:-1], bounds[1:]))


def enumerate_plans(in_shape, out_shape, ranks, batch, dtype=torch.float32, device="cpu",
                    kernels: tuple[str, ...] = ("gemm",), threads: int | None = None) -> list[Plan]:
    """Every candidate plan with its predicted cost (unsorted); ``threads`` defaults to torch's."""
    in_shape, out_shape, ranks = _check(in_shape, out_shape, ranks, batch)
    model = cost_model(device, threads)
    itemsize = torch.empty((), dtype=dtype).element_size()
    plans = []
    for groups in _groupings(len(in_shape)):
        for kernel in kernels:
            directions = ("ltr",) if (kernel == "fused" or len(groups) == 1) else ("ltr", "rtl")
            if kernel == "fused" and len(groups) == 1:
                continue
            for direction in directions:
                fwd, bwd, recompute, steps = _costs(model, in_shape, out_shape, ranks, batch, groups, direction,
                                                    kernel, itemsize)
                plans.append(Plan(in_shape, out_shape, ranks, batch, groups, direction,
                                  "gemm" if len(groups) == 1 else kernel, fwd, bwd, recompute, tuple(steps)))
    return plans


def _check(in_shape, out_shape, ranks, batch):
    in_shape, out_shape, ranks = tuple(int(s) for s in in_shape), tuple(int(s) for s in out_shape), tuple(
        int(r) for r in ranks)
    if len(in_shape) == 0 or len(in_shape) != len(out_shape):
        raise ValueError(f"in_shape and out_shape must have the same positive length, got {in_shape} and {out_shape}")
    if min(in_shape + out_shape) < 1:
        raise ValueError(f"in_shape and out_shape entries must be >= 1, got {in_shape} and {out_shape}")
    if len(ranks) != len(in_shape) - 1 or (ranks and min(ranks) < 1):
        raise ValueError(f"ranks must hold {len(in_shape) - 1} positive bond dimensions, got {ranks}")
    if int(batch) < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    return in_shape, out_shape, ranks


_OBJECTIVES = {
    "training": lambda p: p.forward.seconds + p.backward.seconds,
    "forward": lambda p: p.forward.seconds,
    "backward": lambda p: p.backward.seconds + p.recompute.seconds,
}


def objective_seconds(p: Plan, objective: str) -> float:
    """The predicted seconds of ``p`` for ``objective`` (``training``, ``forward`` or ``backward``)."""
    return _OBJECTIVES[objective](p)


@functools.lru_cache(maxsize=4096)
def _cached_plan(in_shape, out_shape, ranks, batch, dtype, device, kernels, objective, threads) -> Plan:
    plans = enumerate_plans(in_shape, out_shape, ranks, batch, dtype, device, kernels, threads)
    return min(plans, key=_OBJECTIVES[objective])


def plan(in_shape, out_shape, ranks, batch, dtype=torch.float32, device="cpu", *,
         kernels: tuple[str, ...] | None = None, objective: str = "training") -> Plan:
    """The cheapest plan for ``mpo_linear`` at this size, with its predicted forward and backward cost.

    ``ranks``: the n-1 inner bond dimensions (an int means every bond). ``kernels``: which kernels may run
    (default: ``gemm`` plus ``fused`` when a compiled chain kernel exists for ``device``). ``objective``: minimise
    forward + backward with the states kept (``training``, default; what eager autograd uses), the forward alone
    (``forward``; inference and the custom op's forward) or a backward that recomputes the states (``backward``;
    the custom op's backward, planned on its own).
    Cached per arguments and CPU thread count.
    """
    if isinstance(ranks, int):
        ranks = (ranks,) * (len(tuple(in_shape)) - 1)
    in_shape, out_shape, ranks = _check(in_shape, out_shape, ranks, batch)
    device = torch.device(device)
    if kernels is None:
        kernels = default_kernels(device)
    if objective not in _OBJECTIVES:
        raise ValueError(f"objective must be one of {tuple(_OBJECTIVES)}, got {objective!r}")
    threads = torch.get_num_threads() if device.type == "cpu" else 1
    return _cached_plan(in_shape, out_shape, ranks, int(batch), dtype, str(device), tuple(kernels), objective,
                        threads)


def default_kernels(device: torch.device | str) -> tuple[str, ...]:
    """``gemm`` plus ``fused`` when a fused chain kernel can run on ``device`` here."""
    from ..backends import why_unavailable

    device = torch.device(device)
    fused_backend = "cpp" if device.type == "cpu" else "cuda"
    return ("gemm", "fused") if why_unavailable(fused_backend, device) is None else ("gemm",)
