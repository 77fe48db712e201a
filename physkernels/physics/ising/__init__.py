"""2D Ising model: Monte Carlo sampling (Wolff, Swendsen-Wang, multispin Metropolis), exact results, data sets."""

from .observables import (BETA_C, energy_per_spin, integrated_autocorrelation_time, magnetization_per_spin,
                          mean_and_error)
from .sampler import ALGORITHMS, SampleInfo, available_backends, sample

__all__ = ["ALGORITHMS", "BETA_C", "SampleInfo", "available_backends", "energy_per_spin",
           "integrated_autocorrelation_time", "magnetization_per_spin", "mean_and_error", "sample"]
