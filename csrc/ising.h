// 2D Ising Monte Carlo kernels (periodic L x L lattices, J = 1, no field). See ising.cpp.
#pragma once

#include <cstdint>

namespace physkernels::ising {

// Multispin-coded checkerboard Metropolis. words: (n_words, L, L) uint64, bit b of word w is chain 64 w + b
// (bit set = spin +1). Runs n_sweeps sweeps (colour 0 then colour 1) with step counters step_offset, ...
// If anti_bonds / up_spins are non-null they receive, after every sweep, the number of anti-aligned bonds and of
// up spins per chain: int32 arrays of shape (n_words * 64, n_sweeps). L must be even.
void metropolis_multispin(std::uint64_t* words, std::int64_t n_words, int L, double beta, std::int64_t n_sweeps,
                          std::uint64_t seed, std::int64_t step_offset, std::int32_t* anti_bonds,
                          std::int32_t* up_spins, int threads);

// Pack int8 +-1 spins (n_chains, L, L) into words (ceil(n_chains / 64), L, L); missing chains are set to +1.
void pack_spins(const std::int8_t* spins, std::int64_t n_chains, int L, std::uint64_t* words, int threads);
// Unpack the first n_chains chains of words into int8 +-1 spins (n_chains, L, L).
void unpack_spins(const std::uint64_t* words, std::int64_t n_chains, int L, std::int8_t* spins, int threads);

// Wolff single-cluster updates of int8 +-1 chains (n_chains, L, L), chain c at inverse temperature betas[c]:
// n_steps steps of flips_per_step cluster
// flips each, flip counters flip_offset, .... energy / abs_m (nullable, (n_chains, n_steps) float64) receive the
// energy and |m| per spin after every step; flipped_sites (n_chains int64) accumulates the cluster sizes.
void wolff(std::int8_t* spins, std::int64_t n_chains, int L, const double* betas, std::int64_t n_steps,
           std::int64_t flips_per_step, std::uint64_t seed, std::int64_t flip_offset, double* energy, double* abs_m,
           std::int64_t* flipped_sites, int threads);

// Swendsen-Wang sweeps (union-find cluster decomposition) of int8 +-1 chains (n_chains, L, L) at betas[c].
void swendsen_wang(std::int8_t* spins, std::int64_t n_chains, int L, const double* betas, std::int64_t n_steps,
                   std::uint64_t seed, std::int64_t step_offset, double* energy, double* abs_m, int threads);

}  // namespace physkernels::ising
