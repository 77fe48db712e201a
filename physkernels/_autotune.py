"""Choices made by measurement: which MPO contraction plan, which kernel configuration (tile sizes, how a long
reduction is split across programs) runs a problem.

The first call of a problem (``key``: everything the choice depends on) times every candidate on the call's own
tensors and keeps the fastest, as cuDNN's benchmark mode and Triton's autotuner do; later calls with the same key
reuse it. Timings vary, so two processes may choose differently and their results then differ in rounding. The
deterministic ``default`` is used instead (the same choice in every run) when autotuning is off
(:func:`set_autotune`, or the environment variable ``PHYSKERNELS_AUTOTUNE=0``), under
``torch.use_deterministic_algorithms(True)`` (as ``torch.backends.cudnn.benchmark`` yields to it), and while a
CUDA graph is being captured on the device (nothing can be timed then; that choice is not remembered).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Hashable, Sequence

import torch

BUDGET_SECONDS = 0.02  # time one candidate for about this long (three runs at least, after a warm-up)
_enabled = os.environ.get("PHYSKERNELS_AUTOTUNE", "1") != "0"
_memo: dict = {}

__all__ = ["set_autotune", "autotune_enabled", "remembered", "choose", "seconds"]


def set_autotune(enabled: bool) -> None:
    """Choose plans and kernel configurations by timing them on their first call (default; faster) or take the
    deterministic default every time (bitwise-reproducible runs); forgets the choices made so far."""
    global _enabled
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {type(enabled).__name__}")
    _enabled = enabled
    _memo.clear()


def autotune_enabled() -> bool:
    """Whether choices are measured now (on, and no deterministic algorithms requested)."""
    return _enabled and not torch.are_deterministic_algorithms_enabled()


def _capturing(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def seconds(fn: Callable[[], Any], device: torch.device) -> float:
    """Fastest of a few timed runs of ``fn`` after a warm-up (one timed run when a run takes the whole budget)."""
    def timed() -> float:
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    timed()  # warm-up: first-call costs (compilation, allocation) are not measured
    best = spent = timed()
    runs = 1
    while runs < 10 and (runs < 3 or spent < BUDGET_SECONDS) and best < BUDGET_SECONDS:
        t = timed()
        best, spent, runs = min(best, t), spent + t, runs + 1
    return best


def remembered(key: Hashable) -> Any:
    """The choice made for ``key`` under the current setting, or None (the hot path of every call)."""
    return _memo.get((key, autotune_enabled()))


def choose(key: Hashable, device: torch.device, default: Callable[[], Any],
           candidates: Callable[[], Sequence[Any]], run: Callable[[Any], Any]) -> Any:
    """The choice for problem ``key`` on ``device``: the candidate (of ``candidates()``) whose ``run(candidate)``
    is fastest, or ``default()`` where nothing is measured (see the module docstring). ``run`` must not change
    anything the caller observes (its results are discarded); it runs under ``torch.no_grad``."""
    measured = autotune_enabled()
    full_key = (key, measured)
    found = _memo.get(full_key)
    if found is not None:
        return found
    if not measured or _capturing(device):
        found = default()
        if measured:  # chosen during a capture: measure on the next call outside it
            return found
    else:
        options = list(candidates())
        if len(options) == 1:
            found = options[0]
        else:
            with torch.no_grad():
                times = [seconds(lambda c=c: run(c), device) for c in options]
            found = options[times.index(min(times))]
    if len(_memo) > 4096:
        _memo.clear()
    _memo[full_key] = found
    return found
