"""Matrix product operators (MPO-Net, Gao et al.): factorisations, TT-SVD, canonical forms, entropies, compression.

Core layout: ``cores[k]`` has shape ``(D_{k-1}, I_k, J_k, D_k)``, ``D_0 = D_n = 1``; the represented weight has
``nn.Linear.weight``'s shape ``(prod J, prod I)`` (Eq. 5, row-major multi-indices). The layers live in
:mod:`physkernels.nn` (``MPOLinear``, ``MPOConv2d``); the op in :mod:`physkernels.ops` (``mpo_linear``); whole-model
compression is ``physkernels.compress`` (module :mod:`physkernels.nn.compress`, next to the layers it builds). This
package never imports the op or the layers: they build on it.
"""

from .canonical import bond_spectra, canonicalize, entanglement_entropy
from .planner import Plan, plan
from .factorization import factorize, max_ranks, useful_ranks
from .tensor_train import (
    TTSVDResult,
    bipartition_matrix,
    compression_ratio,
    num_parameters,
    to_dense,
    tt_svd,
    validate_cores,
)

__all__ = [
    "Plan",
    "TTSVDResult",
    "bipartition_matrix",
    "bond_spectra",
    "canonicalize",
    "compression_ratio",
    "entanglement_entropy",
    "factorize",
    "max_ranks",
    "num_parameters",
    "plan",
    "to_dense",
    "tt_svd",
    "useful_ranks",
    "validate_cores",
]
