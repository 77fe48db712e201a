"""Drop-in layers built on physkernels.ops."""
from .taylor import TaylorLinear  # noqa: F401
