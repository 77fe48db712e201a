"""Paper models built on physkernels: TaylorNets (CG2d) and MPO-Nets (MPOLinear / MPOConv2d) with dense twins,
and the experiment drivers (``python -m models.<driver>``).

``models.build(name, bond_dim=None)``, ``models.MODELS`` (name -> ModelSpec), ``python -m models.train``.
Every model's ``compression()`` gives its parameter count and the compression ratio rho (MPO paper Eq. 9).
"""

from .accounting import ModelCompression, PaperModel, count_parameters
from .registry import MODELS, ModelSpec, build, spec

__all__ = ["MODELS", "ModelCompression", "ModelSpec", "PaperModel", "build", "count_parameters", "spec"]
