"""2D Ising model: Monte Carlo sampling (Wolff, Swendsen-Wang, multispin Metropolis), exact results, data sets."""

from .exact import brute_force, exact, onsager_energy, spontaneous_magnetization
from .observables import (BETA_C, energy_per_spin, integrated_autocorrelation_time, magnetization_per_spin,
                          mean_and_error)
from .sampler import ALGORITHMS, SampleInfo, available_backends, sample

__all__ = ["ALGORITHMS", "BETA_C", "SampleInfo", "available_backends", "brute_force", "energy_per_spin", "exact",
           "integrated_autocorrelation_time", "magnetization_per_spin", "mean_and_error", "onsager_energy", "sample",
           "spontaneous_magnetization"]
