"""The main job's verdict: one headline comparison per suite, our op against what a user would run instead, timed
interleaved with ``torch.utils.benchmark`` and summarised as a speed-up with its spread.

Each headline is a pair of callables on the same inputs. Both are warmed up, then measured in ``rounds``
alternating rounds (op, baseline, op, baseline, ...; each a ``blocked_autorange`` of ``min_run_time`` seconds, so a
slow phase of a shared machine hits both), giving one speed-up ``baseline time / op time`` per round. The table
reports the median speed-up and its interquartile range; the verdict is ``faster`` or ``slower`` only when the
whole IQR lies on one side of 1, else ``no clear difference``. A relative IQR above ``NOISY`` marks the row noisy,
and the table then warns that the machine was too busy to conclude.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .harness import ResultTable, interleaved_seconds, quartiles

NOISY = 0.25  # relative IQR of the speed-up above which a row is called noisy
COLUMNS = ["suite", "our op", "baseline", "speed-up (median)", "IQR", "verdict"]


@dataclass
class Headline:
    suite: str
    ours: str
    baseline: str
    run_ours: Callable[[], Any] | None
    run_baseline: Callable[[], Any] | None
    note: str = ""  # why the row has no measurement (e.g. the peer library is not installed)


def compare(run_ours: Callable[[], Any], run_baseline: Callable[[], Any], *, rounds: int = 7,
            min_run_time: float = 0.05, device: str = "cpu") -> tuple[float, float, float]:
    """``(q1, median, q3)`` of the per-round speed-up ``baseline time / our time`` (interleaved rounds)."""
    ours, baseline = interleaved_seconds(run_ours, run_baseline, rounds=rounds, min_run_time=min_run_time,
                                         device=device)
    return quartiles([b / o for o, b in zip(ours, baseline)])


def verdict(q1: float, q3: float) -> str:
    if q1 > 1.0:
        return "faster"
    if q3 < 1.0:
        return "slower"
    return "no clear difference"


def table(headlines: list[Headline], *, rounds: int = 7, min_run_time: float = 0.05,
          device: str = "cpu") -> ResultTable:
    """The verdict table: one row per headline (see the module docstring)."""
    result = ResultTable("verdict", f"Verdict ({device}): our op vs what you would use instead", list(COLUMNS))
    noisy = []
    for h in headlines:
        row = {"suite": h.suite, "our op": h.ours, "baseline": h.baseline}
        if h.run_ours is None or h.run_baseline is None:
            row.update({"speed-up (median)": None, "IQR": None, "verdict": h.note or "not measured"})
            result.add(**row)
            continue
        q1, median, q3 = compare(h.run_ours, h.run_baseline, rounds=rounds, min_run_time=min_run_time,
                                 device=device)
        row.update({"speed-up (median)": float(f"{median:.3g}"), "IQR": f"{q1:.3g}-{q3:.3g}",
                    "verdict": verdict(q1, q3)})
        if median > 0 and (q3 - q1) / median > NOISY:
            row["verdict"] += " (noisy)"
            noisy.append(f"{h.suite} vs {h.baseline}")
        result.add(**row)
    result.notes.append(f"speed-up = baseline time / our time per round, {rounds} interleaved rounds "
                        f"(torch.utils.benchmark, blocked_autorange); verdict only when the whole IQR is on one "
                        f"side of 1")
    if noisy:
        result.notes.append(f"WARNING: the spread is large ({'; '.join(noisy)}): the machine was busy; rerun on a "
                            f"quiet machine before drawing conclusions")
    return result


def _mpo(device: str) -> list[Headline]:
    from ..nn import MPOLinear
    from .mpo import _tltorch_layer

    shape, bond, batch = (4, 4, 8, 8, 4), 4, 32
    features = math.prod(shape)
    layer = MPOLinear(shape, shape, bond_dim=bond).to(device)
    dense = torch.nn.Linear(features, features).to(device)
    x = torch.randn(batch, features, device=device)

    def step(module):
        return lambda: module(x).sum().backward()

    rows = [Headline("mpo", f"MPOLinear {shape}^2 D={bond}, B={batch}, fwd+bwd", "nn.Linear(4096, 4096)",
                     step(layer), step(dense))]
    peer = _tltorch_layer(shape, shape, bond, torch.float32, device)
    if peer is None:
        rows.append(Headline("mpo", f"MPOLinear {shape}^2 D={bond}", "tensorly-torch blocktt", None, None,
                             "tensorly-torch is not installed: pip install 'physkernels[bench]'"))
    else:
        rows.append(Headline("mpo", f"MPOLinear {shape}^2 D={bond}, B={batch}, fwd+bwd",
                             "tensorly-torch blocktt, same ranks", step(layer), step(peer)))
    return rows


def _cg2d(device: str) -> list[Headline]:
    from ..nn import CG2d
    from ..ops.cg2d import unfold_cg2d

    layer = CG2d(64, 64, 2, stride=2).to(device)
    x = torch.randn(8, 64, 32, 32, device=device)

    def ours():
        layer(x).sum().backward()

    def unfold():
        unfold_cg2d(x, layer.weight, layer.weight2, None, layer.bias, (2, 2)).sum().backward()

    return [Headline("cg2d", "CG(2,2,64,2,2) 64x32x32, B=8, fwd+bwd", "unfold -> products -> matmul (plain torch)",
                     ours, unfold)]


def _taylor(device: str) -> list[Headline]:
    from ..nn import TaylorLinear
    from ..ops.taylor_linear import reference_taylor_linear

    layer = TaylorLinear(49, 10, order=3).to(device)
    x = torch.rand(256, 49, device=device)

    def ours():
        layer(x).sum().backward()

    def materialised():
        reference_taylor_linear(x, layer.weight, layer.bias, 3).sum().backward()

    return [Headline("taylor", "TaylorLinear(49, 10, order=3), B=256, fwd+bwd",
                     "materialised monomials + GEMM (plain torch)", ours, materialised)]


def _nnqft(device: str) -> list[Headline]:
    from ..physics import nnqft
    from .nnqft import FIG1_POINTS, python_loop_green_functions

    args = (FIG1_POINTS, 4, 10, 2, 100)
    return [Headline("nnqft", "green_functions (fused kernel), N=10, 2 bags x 100 nets",
                     "one torch network per draw (the public code's loop)",
                     lambda: nnqft.green_functions(*args), lambda: python_loop_green_functions(*args))]


def _ising(device: str) -> list[Headline]:
    from ..physics.ising import engines

    if not engines.CppMetropolisEngine.available():
        return [Headline("ising", "multispin Metropolis (C++)", "numpy checkerboard", None, None,
                         "physkernels._C is not built")]
    ours = engines.CppMetropolisEngine(32, 0.44, 1024, seed=0)
    numpy = engines.ReferenceMetropolisEngine(32, 0.44, 1024, seed=0)
    return [Headline("ising", "multispin Metropolis, L=32, 1024 chains, 1 sweep",
                     "numpy checkerboard Metropolis, same chains", lambda: ours.run(1), lambda: numpy.run(1))]


def _rbm(device: str) -> list[Headline]:
    from ..physics.rbm import gibbs

    gen = torch.Generator().manual_seed(0)
    W = torch.randn(16, 16, generator=gen) * 0.1
    b, c = torch.zeros(16), torch.zeros(16)
    v0 = torch.randint(0, 2, (2048, 16), generator=gen).float()
    return [Headline("rbm", "block Gibbs (auto backend), 16x16, 2048 chains, k=10", "torch (reference backend)",
                     lambda: gibbs(v0, W, b, c, k=10), lambda: gibbs(v0, W, b, c, k=10, backend="reference"))]


HEADLINES: dict[str, Callable[[str], list[Headline]]] = {
    "mpo": _mpo, "cg2d": _cg2d, "taylor": _taylor, "nnqft": _nnqft, "ising": _ising, "rbm": _rbm}


def headlines(suites: list[str], device: str) -> list[Headline]:
    """The headline comparisons of ``suites`` on ``device`` (CPU-side ones only on the CPU)."""
    rows = []
    for name in suites:
        if name in HEADLINES and (device == "cpu" or name in ("mpo", "cg2d", "taylor")):
            rows += HEADLINES[name](device)
    return rows
