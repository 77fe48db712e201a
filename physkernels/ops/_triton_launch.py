"""Launch decisions the Triton kernels of every op share: the precision of ``tl.dot`` and how many programs split a
long reduction. Imports no Triton (the op modules that do are imported only when a Triton backend runs).

* :func:`dot_precision`: ``"tf32"`` for float32 on a GPU where the user allows TF32 matmuls
  (``torch.backends.cuda.matmul.allow_tf32``, i.e. ``torch.set_float32_matmul_precision("high")``, as torch's own
  matmuls follow), ``"ieee"`` otherwise (float64, the interpreter, and by default).
* :func:`reduction_splits`: a kernel whose grid has few programs, each looping over a long reduction (a weight
  gradient summed over every position of the batch), runs it in ``S`` independent slices instead, each program
  writing its partial sum, and the partials are then summed in a fixed order (deterministic; no atomics).
"""

from __future__ import annotations

import functools

import torch

PROGRAMS_PER_SM = 4  # programs a split kernel aims for per streaming multiprocessor
INTERPRETED_SPLITS = 2  # under the interpreter every split kernel takes the split path the GPU takes


def dot_precision(x: torch.Tensor) -> str:
    """``input_precision`` of ``tl.dot`` for operands of ``x``'s dtype and device (see the module docstring)."""
    if x.is_cuda and x.dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee"


@functools.lru_cache(maxsize=16)
def _multiprocessors(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def reduction_splits(programs: int, steps: int, device: torch.device) -> int:
    """Slices ``S`` of a reduction of ``steps`` loop iterations run by ``programs`` programs each: enough for
    ``PROGRAMS_PER_SM`` programs per multiprocessor, at most one iteration per slice; under the interpreter
    ``INTERPRETED_SPLITS`` (where there are that many iterations)."""
    if steps <= 1:
        return 1
    if device.type != "cuda":
        return min(INTERPRETED_SPLITS, steps)
    target = PROGRAMS_PER_SM * _multiprocessors(device.index if device.index is not None else
                                                torch.cuda.current_device())
    return max(1, min(steps, -(-target // max(programs, 1))))
