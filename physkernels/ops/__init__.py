"""physkernels ops: each a ``torch.library.custom_op`` in namespace ``physkernels`` with autograd and fake kernels.

One package per op (``ops/<op>/``): its reference math and validation (``reference.py``), one module per backend
(``cpp_backend.py``, ``cuda_backend.py``, ``triton_backend.py``) and the registration (``__init__.py``, through
:class:`ops._builder.KernelOp`). Import the op functions from here.
"""
from .mpo_linear import mpo_linear, reference_mpo_linear  # noqa: F401
from .cg2d import cg2d  # noqa: F401
from .taylor_linear import taylor_linear  # noqa: F401
