// physkernels._C_cuda.ising: CUDA multispin Metropolis (csrc/cuda/ising.cu). Device pointers as integers.
#include "check.cuh"
#include "ising.cuh"
#include "registry.h"

PHYSKERNELS_SUBMODULE(ising, m) {
    m.def("metropolis_multispin",
          [](std::uintptr_t words, std::int64_t n_words, int L, double beta, std::int64_t n_sweeps,
             std::uint64_t seed, std::int64_t step_offset, std::uintptr_t stream) {
              physkernels::cuda::ising_metropolis_multispin(physkernels::bindings::ptr<std::uint64_t>(words), n_words,
                                                            L, beta, n_sweeps, seed, step_offset,
                                                            physkernels::cuda::as_stream(stream));
          },
          "Multispin checkerboard Metropolis on device uint64 words (n_words, L, L), in place, on a stream");
}
