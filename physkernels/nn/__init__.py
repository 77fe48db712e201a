"""Drop-in layers built on physkernels.ops."""
from .cg import CG2d  # noqa: F401
from .taylor import TaylorLinear  # noqa: F401
