"""Benchmark suite ``mpo``: ``mpo_linear`` (planned) vs dense nn.Linear, tensorly-torch blocktt and an einsum chain.

For every (in_shape, out_shape, D, batch) of the MPO-Net paper's layer shapes it times, in one process,
forward, forward+backward (backward = their difference) and the peak memory of forward+backward for:

* ``mpo``: ``physkernels.ops.mpo_linear`` with the active backend (default ``auto``: the planner's choice);
* ``dense``: ``torch.nn.Linear`` of the same shape (the baseline every ratio divides by the MPO time);
* ``tltorch``: ``tltorch.FactorizedLinear(factorization='blocktt')`` at the same ranks (n/a when not installed);
* ``einsum``: a plain sequential chain, one ``torch.einsum`` per core, differentiated by autograd.
"""

from __future__ import annotations

import math

import torch
from tqdm import tqdm

from .harness import ResultTable, median_time, peak_memory_bytes

# (in_shape, out_shape, bond dims) of MPO-Net Sec. IV
SHAPES = [((4, 7, 7, 4), (4, 4, 4, 4), d) for d in (2, 4, 8, 16)] + [
    ((4, 4, 4, 4), (1, 1, 10, 1), 4),
    ((2, 10, 10, 2), (2, 5, 6, 2), 4),
    ((4, 4, 4, 4, 2), (4, 4, 8, 8, 4), 4),
    ((4, 4, 8, 8, 4), (4, 4, 8, 8, 4), 4),
    ((2, 4, 4, 4, 4, 4, 2), (2, 4, 4, 4, 4, 4, 2), 4),
]
BATCHES = (1, 32, 256, 4096)
QUICK_CASES = [(((4, 7, 7, 4), (4, 4, 4, 4), 16), 32), (((2, 10, 10, 2), (2, 5, 6, 2), 4), 256),
               (((4, 4, 8, 8, 4), (4, 4, 8, 8, 4), 4), 32)]


def random_cores(in_shape, out_shape, bond, dtype=torch.float32, device="cpu", seed=0):
    """Cores (D_{k-1}, I_k, J_k, D_k) scaled so that W has entries of order 1/sqrt(prod I)."""
    gen = torch.Generator().manual_seed(seed)
    n = len(in_shape)
    bonds = [1] + [bond] * (n - 1) + [1]
    scale = (1.0 / math.prod(in_shape)) ** (0.5 / n)
    return [(torch.randn(bonds[k], in_shape[k], out_shape[k], bonds[k + 1], generator=gen, dtype=dtype)
             * scale / math.sqrt(bonds[k])).to(device).requires_grad_(True) for k in range(n)]


def einsum_chain(x, cores):
    """Sequential chain: contract x (B, I_1..I_n) with each core in turn, one einsum per core."""
    batch = x.shape[0]
    state = x.reshape(batch, 1, 1, -1)  # (B, J<k, D_{k-1}, I>=k)
    for core in cores:
        d, i, j, d2 = core.shape
        state = state.reshape(batch, state.shape[1], d, i, -1)
        state = torch.einsum("bpdir,dije->bpjer", state, core)
        state = state.reshape(batch, state.shape[1] * j, d2, -1)
    return state.reshape(batch, -1)


def _tltorch_layer(in_shape, out_shape, bond, dtype, device):
    try:
        import tltorch
    except ImportError:
        return None
    rank = (1,) + (bond,) * (len(in_shape) - 1) + (1,)
    layer = tltorch.FactorizedLinear(in_tensorized_features=in_shape, out_tensorized_features=out_shape,
                                     factorization="blocktt", rank=rank, bias=True)
    return layer.to(device=device, dtype=dtype)


def _methods(in_shape, out_shape, bond, device):
    from ..ops import mpo_linear

    p_in, p_out = math.prod(in_shape), math.prod(out_shape)
    cores = random_cores(in_shape, out_shape, bond, device=device)
    bias = torch.zeros(p_out, device=device, requires_grad=True)
    dense = torch.nn.Linear(p_in, p_out).to(device)
    methods = {
        "mpo": lambda x: mpo_linear(x, cores, bias),
        "dense": dense,
        "einsum": lambda x: einsum_chain(x, cores) + bias,
    }
    tl = _tltorch_layer(in_shape, out_shape, bond, torch.float32, device)
    if tl is not None:
        methods["tltorch"] = tl
    return methods


def _measure(fn, x, grad, device, repeats, budget):
    """Medians of: inference forward (no grad), training forward (graph recorded), training forward+backward;
    and the peak memory of forward+backward."""
    def inference():
        with torch.no_grad():
            fn(x)

    def train_step():
        fn(x).backward(grad)

    t_infer = median_time(inference, device=device, repeats=repeats, max_seconds=budget)
    t_fwd = median_time(lambda: fn(x), device=device, repeats=repeats, max_seconds=budget)
    t_train = median_time(train_step, device=device, repeats=repeats, max_seconds=budget)
    peak = peak_memory_bytes(train_step, device=device)
    return t_infer, t_fwd, t_train, peak


def run(quick: bool, device: str = "cpu") -> list[ResultTable]:
    from ..mpo import plan

    columns = ["shape", "D", "batch", "plan (training / inference)", "mpo fwd ms", "mpo bwd ms", "mpo fwd+bwd ms",
               "dense fwd+bwd ms", "tltorch fwd+bwd ms", "einsum fwd+bwd ms", "dense/mpo", "tltorch/mpo",
               "einsum/mpo", "mpo inference ms", "dense inference ms", "dense/mpo inference", "mpo peak MiB",
               "dense peak MiB", "tltorch peak MiB"]
    table = ResultTable("mpo_linear", f"MPO linear vs dense / tensorly-torch blocktt / einsum chain ({device}, "
                        "float32)", columns)
    table.notes += [
        "times are medians of the same process; fwd: training forward (autograd graph recorded); "
        "bwd = (fwd+bwd) - fwd; inference: forward under no_grad; ratios > 1 mean the MPO op is faster",
        "plan: the planner's choice for fwd+bwd (eager autograd) / for the forward alone (no grad); "
        "peak = fwd+bwd allocations",
        "tltorch: tensorly-torch FactorizedLinear(factorization='blocktt') at the same ranks; n/a if missing",
    ]
    cases = QUICK_CASES if quick else [(s, b) for s in SHAPES for b in BATCHES]
    repeats, budget = (3, 0.3) if quick else (7, 3.0)
    for (in_shape, out_shape, bond), batch in tqdm(cases, desc="mpo bench", leave=False):
        p_in, p_out = math.prod(in_shape), math.prod(out_shape)
        ranks = (bond,) * (len(in_shape) - 1)
        methods = _methods(in_shape, out_shape, bond, device)
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(batch, p_in, generator=gen).to(device).requires_grad_(True)
        grad = torch.randn(batch, p_out, generator=gen).to(device)
        res = {name: _measure(fn, x, grad, device, repeats, budget) for name, fn in methods.items()}
        fwd_plan = plan(in_shape, out_shape, ranks, batch, torch.float32, device, objective="forward")
        train_plan = plan(in_shape, out_shape, ranks, batch, torch.float32, device, objective="training")
        mpo_infer, mpo_fwd, mpo_train, mpo_peak = res["mpo"]
        row = {
            "shape": f"{in_shape}->{out_shape}", "D": bond, "batch": batch,
            "plan (training / inference)": f"{train_plan.strategy} / {fwd_plan.strategy}",
            "mpo fwd ms": mpo_fwd * 1e3, "mpo bwd ms": (mpo_train - mpo_fwd) * 1e3, "mpo fwd+bwd ms": mpo_train * 1e3,
            "mpo peak MiB": mpo_peak / 2**20, "mpo inference ms": mpo_infer * 1e3,
            "dense inference ms": res["dense"][0] * 1e3, "dense/mpo inference": res["dense"][0] / mpo_infer,
        }
        for name in ("dense", "tltorch", "einsum"):
            if name in res:
                row[f"{name} fwd+bwd ms"] = res[name][2] * 1e3
                row[f"{name}/mpo"] = res[name][2] / mpo_train
                if name != "einsum":
                    row[f"{name} peak MiB"] = res[name][3] / 2**20
            else:
                row[f"{name} fwd+bwd ms"] = row[f"{name}/mpo"] = row[f"{name} peak MiB"] = "n/a"
        table.add(**row)
    return [table]
