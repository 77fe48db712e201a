"""physkernels ops: each a ``torch.library.custom_op`` in namespace ``physkernels`` with autograd and fake kernels.

One module per op; each module holds the op's reference math (plain torch), its backend implementations and the
registration. Import the op functions from here.
"""
from .mpo_linear import mpo_linear, reference_mpo_linear  # noqa: F401
from .cg2d import cg2d  # noqa: F401
from .taylor_linear import taylor_linear  # noqa: F401
