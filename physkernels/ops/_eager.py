"""When an op may bypass its custom op and call the backend kernels directly or through a ``torch.autograd.Function``.

The custom ops (``torch.ops.physkernels.*``) are what ``torch.compile``, ``torch.export``, fake-tensor tracing and
``torch.library.opcheck`` see; in plain eager mode their dispatch layers cost a few hundred microseconds per
forward+backward on a 2-core CPU, as much as a small layer's whole kernel time, so the ops call the same backend
implementations through a lighter ``autograd.Function`` whenever nothing is tracing them, and for inference
directly (that saves the custom op's dispatch, 5-10 us per forward here: TaylorLinear(49, 10, order=2) at batch 1
runs ``taylor_linear`` in 20 us instead of 23 us for the bare custom op under ``no_grad``).
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

_PLAIN_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)
_is_exporting = getattr(torch.compiler, "is_exporting", lambda: False)  # torch < 2.5 exports through dynamo only


def plain_eager_call(tensors) -> bool:
    """True when the kernels can be called directly: no compiler or exporter tracing, no dispatch mode (fake or
    proxy tensors, opcheck's checks) and only plain tensors and parameters (no tensor subclasses)."""
    return (not torch.compiler.is_compiling() and not _is_exporting()
            and _get_current_dispatch_mode() is None
            and all(t is None or type(t) in _PLAIN_TENSOR_TYPES for t in tensors))
