"""Drop-in layers built on physkernels.ops."""
from .cg import CG2d  # noqa: F401
