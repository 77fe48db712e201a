// CUDA multispin checkerboard Metropolis; mirrors metropolis_multispin in csrc/ising.cpp (same RNG, same bits).
#include <cmath>

#include "check.cuh"
#include "ising.cuh"
#include "ising_rng.h"

namespace physkernels::cuda {
namespace {

using u64 = std::uint64_t;

__global__ void metropolis_colour_kernel(u64* __restrict__ words, std::int64_t n_words, int L, int colour,
                                         u64 step_base, u64 seed, std::uint32_t p1, std::uint32_t p0,
                                         bool accept_all) {
    const std::int64_t half = static_cast<std::int64_t>(L) * L / 2;
    const std::int64_t tid = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (tid >= n_words * half) return;
    const std::int64_t w = tid / half;
    const int k = static_cast<int>(tid % half);
    const int half_row = L / 2;
    const int y = k / half_row;
    const int x = 2 * (k % half_row) + ((y + colour) & 1);
    u64* lattice = words + w * static_cast<std::int64_t>(L) * L;
    const int left = x == 0 ? L - 1 : x - 1, right = x + 1 == L ? 0 : x + 1;
    const int up = y == 0 ? L - 1 : y - 1, down = y + 1 == L ? 0 : y + 1;
    const u64 counter = step_base + static_cast<u64>(y * L + x);
    lattice[y * L + x] = ising::metropolis_word(lattice[y * L + x], lattice[y * L + left], lattice[y * L + right],
                                                lattice[up * L + x], lattice[down * L + x], accept_all,
                                                ising::stream_key(seed, static_cast<u64>(w)), counter, p1, p0);
}

}  // namespace

void ising_metropolis_multispin(u64* words, std::int64_t n_words, int L, double beta, std::int64_t n_sweeps, u64 seed,
                                std::int64_t step_offset, cudaStream_t stream) {
    const std::uint32_t p1 = ising::probability_u32(std::exp(-4.0 * beta));
    const std::uint32_t p0 = ising::probability_u32(std::exp(-8.0 * beta));
    const std::int64_t n_sites = static_cast<std::int64_t>(L) * L;
    const int threads = 256;
    const unsigned blocks = ceil_div(n_words * n_sites / 2, threads);
    if (blocks == 0) return;
    for (std::int64_t t = 0; t < n_sweeps; ++t) {
        const u64 step_base = static_cast<u64>(step_offset + t) * static_cast<u64>(n_sites);
        for (int colour = 0; colour < 2; ++colour) {
            metropolis_colour_kernel<<<blocks, threads, 0, stream>>>(words, n_words, L, colour, step_base, seed, p1, p0,
                                                                     beta == 0.0);
            check(cudaGetLastError(), "ising metropolis_colour_kernel launch");
        }
    }
}

}  // namespace physkernels::cuda
