"""Drop-in layers built on physkernels.ops."""
from .mpo import MPOConv2d, MPOLinear  # noqa: F401
