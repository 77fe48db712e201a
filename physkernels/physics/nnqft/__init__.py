"""NN-QFT (Erbin, Lahoche, Samary 2022): network ensembles as field theories, their Green functions, couplings and
the sigma_w renormalisation flow.

* :func:`ensemble_outputs`, :func:`green_functions` (-> :class:`GreenFunctions`): fused ensemble kernels
  (C++/OpenMP, CUDA, Triton, plain-torch reference) with in-kernel Philox parameters; bags shard over
  ``torch.distributed`` ranks.
* :func:`kernel`, :func:`gaussian_expectation`: the free theory (Eq. 2.3-2.5, 3.2).
* :func:`u4`, :func:`u6`, :func:`leg_integral`, :func:`fit_power_law`, :func:`predicted_slope`,
  :func:`exact_four_point_deviation`, :func:`exact_u4`: couplings and the flow (Eq. 3.6, 4.6).

See docs/nnqft.md.
"""

from .combos import ComboTable
from .couplings import (PowerLawFit, exact_four_point_deviation, exact_u4, fit_power_law, leg_integral,
                        predicted_slope, u4, u6)
from .green import GreenFunctions, ensemble_outputs, green_functions
from .network import ACTIVATIONS, NetworkLaw, as_points, kernel
from .wick import gaussian_expectation, wick_expectations

__all__ = [
    "ACTIVATIONS", "ComboTable", "GreenFunctions", "NetworkLaw", "PowerLawFit", "as_points", "ensemble_outputs",
    "exact_four_point_deviation", "exact_u4", "fit_power_law", "gaussian_expectation", "green_functions", "kernel",
    "leg_integral", "predicted_slope", "u4", "u6", "wick_expectations",
]
