"""Drop-in layers built on physkernels.ops."""
from .mpo import MPOConv2d, MPOLinear  # noqa: F401
from .cg import CG2d  # noqa: F401
from .taylor import TaylorLinear  # noqa: F401
