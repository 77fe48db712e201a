"""Decimation RG of the 2D Ising model versus linear autoencoders (Shukla & Thakur, arXiv:2108.06157).

* :mod:`.decimation`: ``decimate``, the flow ``beta' = 3/8 ln cosh 4 beta`` and its fixed point, the hard-coded
  decimation matrices of Eq. 7-8.
* :mod:`.entropy`: local Shannon entropy in 3x3 neighbourhoods (Fig. 13-14).
* :mod:`.networks`: shallow CG/UP/HCG nets, the autoencoder, Table I transfer wiring, the beta regressor, losses.
* :mod:`.crossing`: where a measured flow ``beta -> beta'`` crosses ``beta' = beta`` (line fit, bootstrap).
* :mod:`.matching`: beta of a lattice from its nearest-neighbour correlation and the exact finite-L solution.
* :mod:`.training`: Adam / batch 10 / 20% validation / L1 training loop with atomic checkpoints.
"""

from .crossing import bootstrap_crossing, curve_crossings, line_crossing
from .decimation import BETA_C, decimate, decimation_weights, flow_beta, flow_fixed_point
from .entropy import lattice_entropy, local_entropy
from .matching import beta_from_correlation, exact_correlation, nearest_neighbour_correlation
from .networks import (
    TABLE_I,
    BetaRegressor,
    LinearAutoencoder,
    build_model,
    hinge_loss,
    l1_penalty,
    layer_sizes,
    mse_loss,
    shallow_name,
    shallow_net,
    to_spins,
    weight_matrix,
)
from ...atomic import save_atomic
from .training import TrainConfig, fit

__all__ = [
    "BETA_C", "TABLE_I", "BetaRegressor", "LinearAutoencoder", "TrainConfig", "beta_from_correlation",
    "bootstrap_crossing", "build_model", "exact_correlation", "nearest_neighbour_correlation",
    "curve_crossings", "decimate", "decimation_weights", "fit", "flow_beta", "flow_fixed_point", "hinge_loss",
    "l1_penalty", "lattice_entropy", "layer_sizes", "line_crossing", "local_entropy", "mse_loss", "save_atomic",
    "shallow_name", "shallow_net", "to_spins", "weight_matrix",
]
