// CUDA multispin checkerboard Metropolis for the 2D Ising model (bit-identical to csrc/ising.cpp).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace physkernels::cuda {

// words: device uint64 (n_words, L, L), bit b of word w = chain 64 w + b. n_sweeps sweeps with step counters
// step_offset, ... (see csrc/ising_rng.h); one thread per (word, site of the active colour), two launches a sweep.
void ising_metropolis_multispin(std::uint64_t* words, std::int64_t n_words, int L, double beta, std::int64_t n_sweeps,
                                std::uint64_t seed, std::int64_t step_offset, cudaStream_t stream);

}  // namespace physkernels::cuda
